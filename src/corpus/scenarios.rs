//! What the synthetic corpus holds: background traffic, and the attack
//! scenarios injected into it with the alerts they must raise.

use std::fmt::Write as _;

use super::{AGENTS, Actor, ROLES, Rng, iam_user, record, role_session};

/// One ordinary call; returns whether it alerts (a denied call) and its id.
pub(super) fn background(
    rng: &mut Rng,
    out: &mut String,
    t: i64,
    account: &str,
    region: &str,
    serial: u64,
) -> Option<String> {
    let role = *rng.pick(&ROLES);
    let session = format!("{}-{}", role, rng.below(40));
    let actor = role_session(rng, account, t, role, &session);
    let roll = rng.below(1000);
    // ~30% large records (RunInstances, stacks, policies, big responses).
    let (source, name, ro, req, resp): (&str, &str, bool, String, String) = match roll {
        0..=149 => {
            let key = format!("data/{}/part-{:05}.parquet", rng.hex(8), rng.below(99_999));
            (
                "s3.amazonaws.com",
                "GetObject",
                true,
                format!(
                    r#"{{"bucketName":"{account}-lake","Host":"{account}-lake.s3.{region}.amazonaws.com","key":"{key}"}}"#
                ),
                "null".into(),
            )
        }
        150..=299 => {
            let sess = rng.b64(620);
            (
                "sts.amazonaws.com",
                "AssumeRole",
                true,
                format!(
                    r#"{{"roleArn":"arn:aws:iam::{account}:role/{role}","roleSessionName":"{session}","durationSeconds":3600}}"#
                ),
                format!(
                    r#"{{"credentials":{{"accessKeyId":"ASIA{}","sessionToken":"{sess}","expiration":"Nov 20, 2026, 11:00:00 AM"}},"assumedRoleUser":{{"assumedRoleId":"AROA{}:{session}","arn":"arn:aws:sts::{account}:assumed-role/{role}/{session}"}}}}"#,
                    rng.alnum_upper(16),
                    rng.alnum_upper(17)
                ),
            )
        }
        300..=449 => (
            "kms.amazonaws.com",
            *rng.pick(&["Decrypt", "GenerateDataKey", "Encrypt"]),
            true,
            format!(
                r#"{{"encryptionContext":{{"aws:s3:arn":"arn:aws:s3:::{account}-lake/data/{}"}},"encryptionAlgorithm":"SYMMETRIC_DEFAULT","keyId":"arn:aws:kms:{region}:{account}:key/{}"}}"#,
                rng.hex(16),
                rng.uuid()
            ),
            "null".into(),
        ),
        450..=549 => (
            "ec2.amazonaws.com",
            "DescribeInstances",
            true,
            format!(
                r#"{{"instancesSet":{{}},"filterSet":{{"items":[{{"name":"tag:Service","valueSet":{{"items":[{{"value":"{role}"}}]}}}},{{"name":"instance-state-name","valueSet":{{"items":[{{"value":"running"}}]}}}}]}}}}"#
            ),
            "null".into(),
        ),
        550..=629 => (
            "logs.amazonaws.com",
            "CreateLogStream",
            false,
            format!(
                r#"{{"logGroupName":"/ecs/{role}","logStreamName":"ecs/{role}/{}"}}"#,
                rng.hex(32)
            ),
            "null".into(),
        ),
        630..=699 => (
            "ssm.amazonaws.com",
            "GetParameter",
            true,
            format!(
                r#"{{"name":"/{role}/config/{}","withDecryption":true}}"#,
                rng.below(30)
            ),
            "null".into(),
        ),
        700..=799 => {
            // RunInstances: a large request and response.
            let n = 1 + rng.below(4);
            let mut items = String::new();
            for i in 0..n {
                if i > 0 {
                    items.push(',');
                }
                let _ = write!(
                    items,
                    r#"{{"instanceId":"i-{}","imageId":"ami-{}","instanceState":{{"code":0,"name":"pending"}},"privateDnsName":"ip-10-0-{}-{}.{region}.compute.internal","amiLaunchIndex":{i},"productCodes":{{}},"instanceType":"m6i.large","launchTime":{},"placement":{{"availabilityZone":"{region}a","tenancy":"default"}},"monitoring":{{"state":"disabled"}},"subnetId":"subnet-{}","vpcId":"vpc-{}","privateIpAddress":"10.0.{}.{}","stateReason":{{"code":"pending","message":"pending"}},"architecture":"x86_64","rootDeviceType":"ebs","rootDeviceName":"/dev/xvda","blockDeviceMapping":{{}},"virtualizationType":"hvm","hypervisor":"xen","groupSet":{{"items":[{{"groupId":"sg-{}","groupName":"{role}"}}]}},"networkInterfaceSet":{{"items":[{{"networkInterfaceId":"eni-{}","subnetId":"subnet-{}","vpcId":"vpc-{}","ownerId":"{account}","status":"in-use","macAddress":"02:{}:{}:{}:{}:{}","privateIpAddress":"10.0.{}.{}","sourceDestCheck":true,"interfaceType":"interface","groupSet":{{"items":[{{"groupId":"sg-{}","groupName":"{role}"}}]}},"attachment":{{"attachmentId":"eni-attach-{}","deviceIndex":0,"networkCardIndex":0,"status":"attaching","attachTime":{},"deleteOnTermination":true}},"privateIpAddressesSet":{{"item":[{{"privateIpAddress":"10.0.{}.{}","primary":true}}]}},"ipv6AddressesSet":{{}},"tagSet":{{}}}}]}},"ebsOptimized":true,"enaSupport":true,"cpuOptions":{{"coreCount":1,"threadsPerCore":2}},"capacityReservationSpecification":{{"capacityReservationPreference":"open"}},"enclaveOptions":{{"enabled":false}},"metadataOptions":{{"state":"pending","httpTokens":"required","httpPutResponseHopLimit":2,"httpEndpoint":"enabled","httpProtocolIpv4":"ipv4","httpProtocolIpv6":"disabled","instanceMetadataTags":"disabled"}},"maintenanceOptions":{{"autoRecovery":"default"}},"privateDnsNameOptions":{{"hostnameType":"ip-name","enableResourceNameDnsARecord":false,"enableResourceNameDnsAAAARecord":false}}}}"#,
                    rng.hex(17),
                    rng.hex(17),
                    rng.below(256),
                    rng.below(256),
                    t * 1000,
                    rng.hex(17),
                    rng.hex(17),
                    rng.below(256),
                    rng.below(256),
                    rng.hex(17),
                    rng.hex(17),
                    rng.hex(17),
                    rng.hex(17),
                    rng.hex(2),
                    rng.hex(2),
                    rng.hex(2),
                    rng.hex(2),
                    rng.hex(2),
                    rng.below(256),
                    rng.below(256),
                    rng.hex(17),
                    rng.hex(17),
                    t * 1000,
                    rng.below(256),
                    rng.below(256),
                );
            }
            (
                "ec2.amazonaws.com",
                "RunInstances",
                false,
                format!(
                    r#"{{"instancesSet":{{"items":[{{"imageId":"ami-{}","minCount":{n},"maxCount":{n}}}]}},"instanceType":"m6i.large","blockDeviceMapping":{{}},"monitoring":{{"enabled":false}},"disableApiTermination":false,"disableApiStop":false,"clientToken":"{}","iamInstanceProfile":{{"arn":"arn:aws:iam::{account}:instance-profile/{role}"}},"metadataOptions":{{"httpTokens":"required"}},"tagSpecificationSet":{{"items":[{{"resourceType":"instance","tags":[{{"key":"Service","value":"{role}"}},{{"key":"Owner","value":"platform"}}]}}]}}}}"#,
                    rng.hex(17),
                    rng.uuid()
                ),
                format!(
                    r#"{{"requestId":"{}","reservationId":"r-{}","ownerId":"{account}","groupSet":{{}},"instancesSet":{{"items":[{items}]}},"requesterId":"{account}"}}"#,
                    rng.uuid(),
                    rng.hex(17)
                ),
            )
        }
        800..=899 => {
            // A CloudFormation stack: long parameters and a template URL.
            let mut params = String::new();
            for i in 0..(6 + rng.below(20)) {
                if i > 0 {
                    params.push(',');
                }
                let _ = write!(
                    params,
                    r#"{{"parameterKey":"Param{i}","parameterValue":"{}"}}"#,
                    {
                        let n = 40 + rng.below(120) as usize;
                        rng.b64(n)
                    }
                );
            }
            (
                "cloudformation.amazonaws.com",
                "CreateStack",
                false,
                format!(
                    r#"{{"stackName":"{role}-{}","templateURL":"https://s3.{region}.amazonaws.com/{account}-cfn/{}.yaml","parameters":[{params}],"capabilities":["CAPABILITY_NAMED_IAM"],"tags":[{{"key":"Service","value":"{role}"}}],"disableRollback":false}}"#,
                    rng.below(1000),
                    rng.hex(24)
                ),
                format!(
                    r#"{{"stackId":"arn:aws:cloudformation:{region}:{account}:stack/{role}/{}"}}"#,
                    rng.uuid()
                ),
            )
        }
        _ => {
            // A bucket policy for the account's own roles.
            let mut stmts = String::new();
            for i in 0..(2 + rng.below(6)) {
                if i > 0 {
                    stmts.push(',');
                }
                let _ = write!(
                    stmts,
                    r#"{{"Sid":"Allow{i}","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:role/{}"}},"Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::{account}-lake/{}/*"}}"#,
                    rng.pick(&ROLES),
                    rng.hex(8)
                );
            }
            (
                "s3.amazonaws.com",
                "PutBucketPolicy",
                false,
                format!(
                    r#"{{"bucketName":"{account}-lake","Host":"s3.{region}.amazonaws.com","policy":{{"Version":"2012-10-17","Statement":[{stmts}]}}}}"#
                ),
                "null".into(),
            )
        }
    };
    let errors = rng.below(1000);
    if errors < 3 {
        // Denied: a one-off session, so denials never add up to a burst.
        let session = format!("denied-{serial}");
        let actor = role_session(rng, account, t, role, &session);
        let id = record(
            rng,
            out,
            t,
            account,
            region,
            &actor,
            source,
            name,
            ro,
            &req,
            "null",
            r#","errorCode":"AccessDenied","errorMessage":"User is not authorized to perform this operation because no identity-based policy allows it""#,
        );
        return Some(id);
    }
    let extra = match errors {
        3..=8 => r#","errorCode":"ThrottlingException","errorMessage":"Rate exceeded""#,
        9..=13 => r#","errorCode":"ResourceNotFoundException","errorMessage":"Resource not found""#,
        _ => "",
    };
    let resp = if extra.is_empty() {
        resp
    } else {
        "null".into()
    };
    record(
        rng, out, t, account, region, &actor, source, name, ro, &req, &resp, extra,
    );
    None
}

/// An expected alert.
pub(super) enum Expect {
    /// A rule (by its path under `rules/`, without `.yml`) on an event.
    Event(&'static str, String),
    /// A correlation over that many events.
    Correlation(&'static str, u64),
}

/// What one scenario injected: records, and the alerts they must raise.
#[derive(Default)]
pub(super) struct Injected {
    pub(super) records: Vec<String>,
    pub(super) expect: Vec<Expect>,
}

/// Injected attacks (distinct actors per instance `n`), at time `t`.
pub(super) fn scenario(
    rng: &mut Rng,
    which: u64,
    n: u64,
    t: i64,
    account: &str,
    region: &str,
    injected: &mut Injected,
) {
    let Injected {
        records: out,
        expect,
    } = injected;
    let mut rec = |rng: &mut Rng,
                   t: i64,
                   actor: &Actor,
                   source: &str,
                   name: &str,
                   ro: bool,
                   req: &str,
                   resp: &str,
                   extra: &str| {
        let mut s = String::new();
        let id = record(
            rng, &mut s, t, account, region, actor, source, name, ro, req, resp, extra,
        );
        out.push(s);
        id
    };
    match which % 9 {
        0 => {
            // Root signs in to the console without MFA.
            let actor = Actor {
                identity: format!(
                    r#"{{"type":"Root","principalId":"{account}","arn":"arn:aws:iam::{account}:root","accountId":"{account}","accessKeyId":""}}"#
                ),
                ip: format!("198.51.100.{}", 1 + n % 250),
                agent: AGENTS[4],
            };
            let id = rec(
                rng,
                t,
                &actor,
                "signin.amazonaws.com",
                "ConsoleLogin",
                false,
                "null",
                r#"{"ConsoleLogin":"Success"}"#,
                r#","additionalEventData":{"LoginTo":"https://console.aws.amazon.com/console/home","MobileVersion":"No","MFAUsed":"No"}"#,
            );
            for r in [
                "root/root_console_login",
                "root/root_console_login_without_mfa",
                "root/root_usage",
            ] {
                expect.push(Expect::Event(r, id.clone()));
            }
        }
        1 => {
            // An IAM user creates access keys for another user.
            let actor = iam_user(rng, account, &format!("mallory-{n}"));
            let key = rng.alnum_upper(16);
            let id = rec(
                rng,
                t,
                &actor,
                "iam.amazonaws.com",
                "CreateAccessKey",
                false,
                &format!(r#"{{"userName":"svc-backup-{n}"}}"#),
                &format!(
                    r#"{{"accessKey":{{"userName":"svc-backup-{n}","accessKeyId":"AKIA{key}","status":"Active","createDate":"Nov 20, 2026, 10:00:00 AM"}}}}"#
                ),
                "",
            );
            for r in [
                "keys/access_key_created",
                "keys/access_key_created_for_other_user",
                "mfa/iam_change_without_mfa",
            ] {
                expect.push(Expect::Event(r, id.clone()));
            }
        }
        2 => {
            // AdministratorAccess attached to a user.
            let actor = iam_user(rng, account, &format!("mallory-{n}"));
            let id = rec(
                rng,
                t,
                &actor,
                "iam.amazonaws.com",
                "AttachUserPolicy",
                false,
                &format!(
                    r#"{{"userName":"mallory-{n}","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}}"#
                ),
                "null",
                "",
            );
            for r in [
                "policy/admin_policy_attached",
                "policy/policy_attached_to_user",
                "mfa/iam_change_without_mfa",
            ] {
                expect.push(Expect::Event(r, id.clone()));
            }
        }
        3 => {
            // CloudTrail logging stopped.
            let actor = role_session(rng, account, t, "ci-deployer", &format!("intruder-{n}"));
            let id = rec(
                rng,
                t,
                &actor,
                "cloudtrail.amazonaws.com",
                "StopLogging",
                false,
                &format!(r#"{{"name":"arn:aws:cloudtrail:{region}:{account}:trail/org-trail"}}"#),
                "null",
                "",
            );
            expect.push(Expect::Event("tamper/cloudtrail_tampering", id));
        }
        4 => {
            // GuardDuty detector deleted.
            let actor = role_session(rng, account, t, "ci-deployer", &format!("intruder-{n}"));
            let detector = rng.hex(32);
            let id = rec(
                rng,
                t,
                &actor,
                "guardduty.amazonaws.com",
                "DeleteDetector",
                false,
                &format!(r#"{{"detectorId":"{detector}"}}"#),
                "null",
                "",
            );
            expect.push(Expect::Event("tamper/guardduty_tampering", id));
        }
        5 => {
            // A role's trust policy opened to every AWS principal.
            let actor = role_session(rng, account, t, "ci-deployer", &format!("intruder-{n}"));
            let id = rec(
                rng,
                t,
                &actor,
                "iam.amazonaws.com",
                "UpdateAssumeRolePolicy",
                false,
                &format!(
                    r#"{{"roleName":"app-backend-{n}","policyDocument":"{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":{{\"AWS\":\"*\"}},\"Action\":\"sts:AssumeRole\"}}]}}"}}"#
                ),
                "null",
                "",
            );
            for r in [
                "trust/role_trust_policy_changed",
                "trust/role_trusts_any_principal",
            ] {
                expect.push(Expect::Event(r, id.clone()));
            }
        }
        6 => {
            // A stolen role session enumerating: 12 denied calls in 2 minutes.
            let actor = role_session(rng, account, t, "app-backend", &format!("stolen-{n}"));
            let calls = [
                ("iam.amazonaws.com", "ListUsers"),
                ("iam.amazonaws.com", "ListRoles"),
                ("s3.amazonaws.com", "ListBuckets"),
                ("secretsmanager.amazonaws.com", "ListSecrets"),
                ("kms.amazonaws.com", "ListKeys"),
                ("ec2.amazonaws.com", "DescribeInstances"),
            ];
            for i in 0..12 {
                let (src, name) = calls[i % calls.len()];
                let code = if src == "ec2.amazonaws.com" {
                    r#","errorCode":"Client.UnauthorizedOperation","errorMessage":"You are not authorized to perform this operation.""#
                } else {
                    r#","errorCode":"AccessDenied","errorMessage":"not authorized""#
                };
                let id = rec(
                    rng,
                    t + i as i64 * 10,
                    &actor,
                    src,
                    name,
                    true,
                    "null",
                    "null",
                    code,
                );
                expect.push(Expect::Event("errors/access_denied", id));
            }
            expect.push(Expect::Correlation("bursts/access_denied_burst", 10));
        }
        7 => {
            // Password guessing against one user from one address.
            for i in 0..6 {
                let actor = Actor {
                    identity: format!(
                        r#"{{"type":"IAMUser","principalId":"AIDA{}","accountId":"{account}","accessKeyId":"","userName":"alice-{n}"}}"#,
                        rng.alnum_upper(17)
                    ),
                    // One address per instance, so bursts never merge.
                    ip: format!("198.{}.{}.{}", 18 + (n >> 16) % 2, (n >> 8) & 255, n & 255),
                    agent: AGENTS[4],
                };
                let id = rec(
                    rng,
                    t + i * 7,
                    &actor,
                    "signin.amazonaws.com",
                    "ConsoleLogin",
                    false,
                    "null",
                    r#"{"ConsoleLogin":"Failure"}"#,
                    r#","additionalEventData":{"LoginTo":"https://console.aws.amazon.com/console/home","MobileVersion":"No","MFAUsed":"No"},"errorMessage":"Failed authentication""#,
                );
                // The per-event rule only feeds the bursts (no alert of
                // its own).
                let _ = id;
            }
            expect.push(Expect::Correlation(
                "bursts/failed_console_logins_per_user",
                5,
            ));
            expect.push(Expect::Correlation(
                "bursts/failed_console_logins_per_ip",
                5,
            ));
        }
        _ => {
            // A new user, given a console password by someone else.
            let actor = iam_user(rng, account, &format!("mallory-{n}"));
            let uid = rng.alnum_upper(17);
            let id = rec(
                rng,
                t,
                &actor,
                "iam.amazonaws.com",
                "CreateUser",
                false,
                &format!(r#"{{"userName":"backdoor-{n}"}}"#),
                &format!(
                    r#"{{"user":{{"path":"/","userName":"backdoor-{n}","userId":"AIDA{uid}","arn":"arn:aws:iam::{account}:user/backdoor-{n}","createDate":"Nov 20, 2026, 10:00:00 AM"}}}}"#
                ),
                "",
            );
            for r in ["users/iam_user_created", "mfa/iam_change_without_mfa"] {
                expect.push(Expect::Event(r, id.clone()));
            }
            let id = rec(
                rng,
                t + 5,
                &actor,
                "iam.amazonaws.com",
                "CreateLoginProfile",
                false,
                &format!(r#"{{"userName":"backdoor-{n}","passwordResetRequired":false}}"#),
                "null",
                "",
            );
            for r in [
                "users/login_profile_for_other_user",
                "mfa/iam_change_without_mfa",
            ] {
                expect.push(Expect::Event(r, id.clone()));
            }
        }
    }
}
