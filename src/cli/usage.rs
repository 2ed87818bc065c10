//! `usage`: a key's requests per hour or per UTC day, accepted and refused by reason, from
//! the store or through `--server`, as a table or (`--json`) one JSON object.

use std::io::Write;
use std::time::SystemTime;

use keyledger::{Granularity, KeyId, UsageJson, usage_since_default};

use super::Target;
use super::args::key_id_arg;
use super::exit::{self, Failure};
use super::render::{Table, human_time};
use super::write_json;

/// What `usage` takes.
#[derive(Debug, clap::Args)]
pub(crate) struct UsageArgs {
    /// The key's id (16 hex digits)
    #[arg(value_name = "KEY_ID", value_parser = key_id_arg)]
    key_id: KeyId,
    /// From this time (RFC 3339, e.g. 2026-01-31T09:00:00Z); by default 24 hours (30 days
    /// with --granularity day) back from --until
    #[arg(long, value_name = "TIME")]
    since: Option<jiff::Timestamp>,
    /// Up to this time (RFC 3339); by default now
    #[arg(long, value_name = "TIME")]
    until: Option<jiff::Timestamp>,
    /// One bucket per hour or per UTC day
    #[arg(long, value_name = "hour|day", default_value = "hour", value_parser = granularity_arg)]
    granularity: Granularity,
    /// One JSON object: key_id, granularity, buckets (start, accepted, rejected by reason)
    #[arg(long)]
    json: bool,
}

fn granularity_arg(s: &str) -> Result<Granularity, String> {
    s.parse().map_err(|e: keyledger::Error| e.to_string())
}

pub(super) fn usage(target: &Target, args: UsageArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let until = args.until.map(SystemTime::from);
    let since = args.since.map(SystemTime::from);
    let answer = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            let until = until.unwrap_or_else(SystemTime::now);
            let since = since.unwrap_or_else(|| usage_since_default(args.granularity, until));
            let buckets = keys.usage(args.key_id, since, until, args.granularity)?;
            UsageJson::new(args.key_id, args.granularity, &buckets)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.usage(args.key_id, since, until, args.granularity)?,
    };
    if args.json {
        write_json(out, &answer)?;
        return Ok(exit::OK);
    }
    writeln!(out, "key {}, per {} (UTC)", answer.key_id, answer.granularity)?;
    let mut table = Table::new(vec!["START", "ACCEPTED", "REJECTED", "REASONS"]);
    for b in &answer.buckets {
        let reasons: Vec<String> = b.rejected.iter().map(|(code, n)| format!("{code} {n}")).collect();
        table.row(vec![
            human_time(&b.start),
            b.accepted.to_string(),
            b.rejected.values().sum::<u64>().to_string(),
            reasons.join(", "),
        ]);
    }
    table.write(out, "")?;
    Ok(exit::OK)
}
