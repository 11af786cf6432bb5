//! Incidents: the alerts of one principal (in one account) across rules,
//! within `incident_secs` of each other, told as one story.
//!
//! CreateUser → CreateAccessKey → AttachUserPolicy(AdministratorAccess) →
//! DeleteTrail by one principal is an attack in four steps, not four
//! unrelated alerts. Each remote sink keeps, per (principal, account), the
//! incident's timeline in the state store; an alert that joins an incident
//! whose last message is still waiting in the outbox is folded into it (one
//! message carries the whole timeline, headed by its most severe alert), and
//! otherwise goes out as an update carrying the timeline so far. Mails of one
//! incident share a thread (`References`), so the story reads top to bottom
//! in any mail client.
//!
//! Decided when alerts are queued, in the transaction that commits them, so
//! a crash never splits or repeats a story. Bounded: [`MAX_STEPS`] steps kept
//! per incident (the rest counted), [`MAX_INCIDENTS_PER_BATCH`] incidents
//! touched per batch (alerts beyond go out on their own, counted), and an
//! incident quiet for `incident_secs` is forgotten.

use serde::{Deserialize, Serialize};

use super::Alert;
use crate::rules::Level;

/// Steps of an incident kept for its timeline; later ones are counted.
pub(crate) const MAX_STEPS: usize = 50;

/// Incidents one batch may open or extend; alerts of further principals in
/// the same batch are sent on their own (a flood of distinct principals
/// cannot make a batch hold unbounded state).
pub(crate) const MAX_INCIDENTS_PER_BATCH: usize = 10_000;

/// One alert in an incident's timeline: what a reader scans down.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Step {
    /// The event's time as written (`-` when absent).
    pub event_time: String,
    pub level: Level,
    pub rule_title: String,
    pub event_name: String,
    pub event_id: String,
}

impl Step {
    fn of(a: &Alert) -> Step {
        let cut = |s: Option<&str>| super::bound(s.unwrap_or("-"));
        Step {
            event_time: cut(a.event_time.as_deref()),
            level: a.level,
            rule_title: super::bound(&a.rule_title),
            event_name: cut(a.event_name.as_deref()),
            event_id: cut(a.event_id.as_deref()),
        }
    }
}

/// An incident as a message shows it: its id (stable for its life: the
/// mail thread), when it opened, and its timeline so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IncidentView {
    pub id: String,
    pub opened_ms: u64,
    pub steps: Vec<Step>,
    /// Steps beyond [`MAX_STEPS`], counted.
    pub more: u64,
}

impl IncidentView {
    /// Alerts in the incident so far.
    pub fn len(&self) -> u64 {
        self.steps.len() as u64 + self.more
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distinct event names, the most severe first (in order of
    /// arrival among equals), at most `max`, then `…`: a subject line that
    /// leads with what matters, not with the noise that came first.
    pub fn path(&self, max: usize) -> String {
        let mut names: Vec<(Level, usize, &str)> = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            match names.iter_mut().find(|(_, _, n)| *n == s.event_name) {
                Some(seen) => seen.0 = seen.0.max(s.level),
                None => names.push((s.level, i, &s.event_name)),
            }
        }
        names.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let more = names.len() > max;
        let mut p = names
            .iter()
            .take(max)
            .map(|(_, _, n)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        if more {
            p.push_str(", …");
        }
        p
    }

    /// The first step's event time (what "since" means to a reader).
    pub fn first_event_time(&self) -> &str {
        self.steps.first().map_or("-", |s| s.event_time.as_str())
    }
}

/// One incident as the store keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Incident {
    pub view: IncidentView,
    /// When its last alert was queued (ms): quiet for `incident_secs`
    /// after this, it is over.
    pub last_ms: u64,
    /// The outbox key of its message still waiting, if any: the next alert
    /// folds into it instead of making another message.
    pub pending: Option<u64>,
    /// Its most severe alert so far (the newest on a tie), without the
    /// event: what the message saying it is over refers to. Kept only for
    /// sinks that send one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Alert>,
}

impl Incident {
    /// A new incident opened by `a` at `now_ms`, keyed `key`.
    pub fn open(key: &str, a: &Alert, now_ms: u64) -> Incident {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(key.as_bytes());
        ctx.update(&now_ms.to_le_bytes());
        let id = super::hex(&ctx.finish().as_ref()[..8]);
        Incident {
            view: IncidentView {
                id,
                opened_ms: now_ms,
                steps: vec![Step::of(a)],
                more: 0,
            },
            last_ms: now_ms,
            pending: None,
            head: None,
        }
    }

    /// Keep `a` as the headline if it is at least as severe as the one
    /// kept (its event left out: the store holds one headline per
    /// incident, not one event).
    pub fn note_head(&mut self, a: &Alert) {
        if self.head.as_ref().is_none_or(|h| a.level >= h.level) {
            self.head = Some(Alert {
                event: None,
                ..a.clone()
            });
        }
    }

    /// Add `a` as the next step. A full timeline drops its least severe
    /// step (the oldest of those) to make room, or this one if it is less
    /// severe still: fifty denied calls first cannot push the backdoor key
    /// and the DeleteTrail that follow out of the story.
    pub fn push(&mut self, a: &Alert, now_ms: u64) {
        self.last_ms = now_ms;
        let steps = &mut self.view.steps;
        if steps.len() < MAX_STEPS {
            steps.push(Step::of(a));
            return;
        }
        self.view.more += 1;
        let weakest = (0..steps.len()).min_by_key(|&i| (steps[i].level, i));
        if let Some(i) = weakest
            && steps[i].level <= a.level
        {
            steps.remove(i);
            steps.push(Step::of(a));
        }
    }
}

/// Which incident an alert belongs to: its principal in its account. `None`
/// (no incident) for alerts without a principal, or whose principal is only
/// an identity type (`AWSService`, `Unknown`): those are not one actor.
pub fn key(a: &Alert) -> Option<String> {
    let p = a.principal.as_deref()?;
    if !p.starts_with("arn:") {
        return None;
    }
    Some(format!("{p}\u{0}{}", a.account.as_deref().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleMeta;
    use std::sync::Arc;

    fn alert(event: &str, level: Level) -> Alert {
        let mut a = Alert::example(Arc::new(RuleMeta::example(event)));
        a.event_name = Some(event.into());
        a.level = level;
        a.principal = Some("arn:aws:iam::1:user/mallory".into());
        a.account = Some("1".into());
        a
    }

    #[test]
    fn a_timeline_is_bounded_and_reads_as_a_path() {
        let mut i = Incident::open("k", &alert("CreateUser", Level::Low), 0);
        for e in ["CreateAccessKey", "AttachUserPolicy", "DeleteTrail"] {
            i.push(&alert(e, Level::High), 1);
        }
        assert_eq!(
            i.view.path(3),
            "CreateAccessKey, AttachUserPolicy, DeleteTrail, …"
        );
        for _ in 0..100 {
            i.push(&alert("ListUsers", Level::Low), 2);
        }
        assert_eq!(i.view.steps.len(), MAX_STEPS);
        assert_eq!(i.view.len(), 104);
        assert_eq!(i.last_ms, 2);
        // Noise first, then the attack: the severe steps stay.
        let mut n = Incident::open("k", &alert("List0", Level::Low), 0);
        for k in 1..60 {
            n.push(&alert(&format!("List{k}"), Level::Low), 1);
        }
        for e in ["CreateAccessKey", "AttachUserPolicy", "DeleteTrail"] {
            n.push(&alert(e, Level::High), 2);
        }
        let kept: Vec<&str> = n.view.steps.iter().map(|s| s.event_name.as_str()).collect();
        assert_eq!(kept.len(), MAX_STEPS);
        assert_eq!(
            &kept[MAX_STEPS - 3..],
            ["CreateAccessKey", "AttachUserPolicy", "DeleteTrail"]
        );
        assert!(
            n.view
                .path(2)
                .starts_with("CreateAccessKey, AttachUserPolicy")
        );
        assert_eq!(n.view.len(), 63);
        // The id is the incident's, not the alert's: stable as it grows.
        let again = Incident::open("k", &alert("Other", Level::Low), 0);
        assert_eq!(again.view.id, i.view.id);
        assert_ne!(
            Incident::open("k", &alert("x", Level::Low), 5).view.id,
            i.view.id
        );
        // A principal that is only an identity type is not one actor.
        let mut a = alert("x", Level::Low);
        a.principal = Some("AWSService".into());
        assert_eq!(key(&a), None);
    }
}
