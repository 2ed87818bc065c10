//! `keyledger credits`: set a key's credits (`--set N [--refill AMOUNT/PERIOD]`), add to
//! them (`--add N`) or remove them (`--remove`), on a store opened here or through
//! `--server`.

use std::io::Write;

use keyledger::KeyJson;

use super::args::CreditsArgs;
use super::exit::{self, Failure};
use super::render;
use super::{Target, existing_key, write_json};

pub(super) fn credits(target: &Target, args: CreditsArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let id = args.key.key_id;
    let set = args.set_to();
    let view = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            let actor = args.key.who.actor()?;
            match args.add {
                Some(amount) => keys.add_credits(&actor, id, amount)?,
                None => keys.set_credits(&actor, id, set)?,
            };
            KeyJson::from(&existing_key(&keys, id)?)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => match args.add {
            Some(amount) => client.add_credits(id, amount)?,
            None => client.set_credits(id, set.as_ref())?,
        },
    };
    if args.json {
        write_json(out, &view)?;
        return Ok(exit::OK);
    }
    let what = match (args.add, &view.credits) {
        (Some(amount), _) => format!("added {amount} credits to"),
        (None, Some(_)) => "set the credits of".to_owned(),
        (None, None) => "removed the credits of".to_owned(),
    };
    writeln!(
        out,
        "{what} key {} \"{}\"; its credits are now: {}",
        view.id,
        view.name,
        render::credits(view.credits.as_ref())
    )?;
    Ok(exit::OK)
}
