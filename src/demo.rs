//! `trailwatch run --demo`: example CloudTrail files with a few attacks,
//! written into the watched directory (the repository's own fixtures,
//! compiled in).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The demo: writes the example CloudTrail files (a root login without MFA,
/// keys created for another user, a burst of denied calls, password
/// spraying) gzip-compressed under CloudTrail's key layout in `dir`.
pub fn write_demo(dir: &Path) -> io::Result<Vec<PathBuf>> {
    const FILES: [(&str, &str); 3] = [
        (
            "123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json.gz",
            include_str!(
                "../tests/fixtures/cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1005Z_example.json"
            ),
        ),
        (
            "123456789012_CloudTrail_eu-west-1_20261120T1020Z_burst.json.gz",
            include_str!(
                "../tests/fixtures/cloudtrail/123456789012_CloudTrail_eu-west-1_20261120T1020Z_burst.json"
            ),
        ),
        (
            "123456789012_CloudTrail_us-east-1_20261120T1100Z_example.json.gz",
            include_str!("../tests/fixtures/cloudtrail/cloudwatch-export.jsonl"),
        ),
    ];
    let day = dir.join("AWSLogs/123456789012/CloudTrail/eu-west-1/2026/11/20");
    std::fs::create_dir_all(&day)?;
    let mut written = Vec::new();
    for (name, text) in FILES {
        let path = day.join(name);
        let mut gz =
            flate2::write::GzEncoder::new(File::create(&path)?, flate2::Compression::default());
        gz.write_all(text.as_bytes())?;
        let file = gz.finish()?;
        // Complete files: dated in the past so the first poll takes them
        // instead of waiting out the settle time meant for files in writing.
        file.set_modified(SystemTime::now() - Duration::from_secs(60))?;
        file.sync_all()?;
        written.push(path);
    }
    Ok(written)
}
