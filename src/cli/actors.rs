//! `keyledger revoke-actor`: revoking a person, on the store or through `--server`.

use std::io::Write;

use clap::Args;
use keyledger::RevokedActorJson;

use super::args::ActorArgs;
use super::{Failure, Target, exit, write_json};

/// Who revokes whom.
#[derive(Debug, Args)]
pub(super) struct RevokeActorArgs {
    #[command(flatten)]
    pub(super) who: ActorArgs,
    /// The person: every admin key acting as them is deleted
    #[arg(value_name = "PERSON")]
    person: String,
    /// Also delete every key the person created (their service keys)
    #[arg(long)]
    with_keys: bool,
    /// One JSON object: actor, with_keys, seq, revoked (the key ids) and unconfirmed
    #[arg(long)]
    json: bool,
}

pub(super) fn revoke(target: &Target, args: RevokeActorArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let answer = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            let revoked = keys.revoke_actor(&args.who.actor()?, &args.person, args.with_keys)?;
            RevokedActorJson::new(&args.person, args.with_keys, &revoked)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.revoke_actor(&args.person, args.with_keys)?,
    };
    if args.json {
        write_json(out, &answer)?;
        return Ok(exit::OK);
    }
    let what = if answer.with_keys {
        "admin keys and the keys they made"
    } else {
        "admin keys"
    };
    writeln!(
        out,
        "revoked {:?} at record {}: {} of their {what} deleted; none of them verifies",
        answer.actor,
        answer.seq,
        answer.revoked.len()
    )?;
    for id in &answer.revoked {
        writeln!(out, "  {id}")?;
    }
    if !answer.unconfirmed.is_empty() {
        writeln!(
            out,
            "not confirmed by: {} (live hosts that had not applied it when the wait ended)",
            answer.unconfirmed.join(", ")
        )?;
    }
    Ok(exit::OK)
}
