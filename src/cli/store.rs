//! `Store`: the store named on the command line (`--db`) with the global options that say
//! how to open it (`--chain-key-file`, `--expect-head`, `--require-whitelist`), a progress
//! bar for a long replay, and the errors of opening it, naming the store. It opens, never
//! acts on the keys: the commands do that with the `KeyStore` it gives them.

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keyledger::{Builder, ChainKey, ChainKeyProblem, Error, KeyStore, Witness};

use super::exit::{self, Failure};

/// Logs shorter than this replay too fast for a progress bar to help.
const LONG_LOG: u64 = 10_000;

/// The store named on the command line, and how to open it.
pub(super) struct Store {
    pub(super) dir: PathBuf,
    pub(super) chain_key_file: Option<PathBuf>,
    pub(super) expect_head: Option<Witness>,
    pub(super) require_whitelist: bool,
}

impl Store {
    pub(super) fn builder(&self) -> Result<Builder, Failure> {
        let mut builder = KeyStore::builder().require_whitelist(self.require_whitelist);
        if let Some(witness) = self.expect_head {
            builder = builder.expect_head(witness);
        }
        Ok(match self.chain_key()? {
            Some(key) => builder.chain_key(key),
            None => builder,
        })
    }

    /// The chain key from `--chain-key-file`, if one was named.
    pub(super) fn chain_key(&self) -> Result<Option<ChainKey>, Failure> {
        let Some(path) = &self.chain_key_file else {
            return Ok(None);
        };
        let key = ChainKey::from_file(path).map_err(|e| match e {
            Error::Io(e) => Failure::new(
                exit::USAGE,
                format!("cannot read the chain key file {}: {e}", path.display()),
            ),
            Error::UnsafeFile { .. } => Failure::new(exit::USAGE, format!("the chain key file {e}")),
            other => Failure::from(other).context(format_args!("in {}", path.display())),
        })?;
        Ok(Some(key))
    }

    /// Opens the store, which must exist unless `create`: reads never create one.
    pub(super) fn open(&self, create: bool) -> Result<KeyStore, Failure> {
        self.open_with(create, |b| b)
    }

    /// Opens the store with more options than the command line's global ones.
    pub(super) fn open_with(
        &self,
        create: bool,
        more: impl FnOnce(Builder) -> Builder,
    ) -> Result<KeyStore, Failure> {
        let (builder, bar) = with_progress(more(self.builder()?), "replaying the log");
        let opened = builder.create_if_missing(create).open(&self.dir);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        opened.map_err(|e| self.failed("open", e))
    }

    /// An error from `verb`ing the store, saying which store.
    pub(super) fn failed(&self, verb: &str, e: Error) -> Failure {
        match e {
            // Already names the store and says it is in use.
            Error::Locked { .. } => return e.into(),
            Error::NotAStore { .. } => {
                return Failure::new(
                    exit::STORAGE,
                    format!(
                        "no store at {}: the first `create` makes one in a new or empty directory; \
                         choose another with --db or KEYLEDGER_DB",
                        self.dir.display()
                    ),
                );
            }
            _ => {}
        }
        let key_missing = matches!(
            &e,
            Error::InvalidInput {
                field: "chain key",
                ..
            } | Error::ChainKeyMismatch(ChainKeyProblem::Missing)
        ) && self.chain_key_file.is_none();
        let mut failure =
            Failure::from(e).context(format_args!("cannot {verb} the store at {}", self.dir.display()));
        if key_missing {
            failure
                .message
                .push_str(" with --chain-key-file FILE or KEYLEDGER_CHAIN_KEY_FILE");
        }
        failure
    }
}

/// Hands the builder a progress callback drawing on stderr, if stderr is a terminal; the
/// bar appears only once the log proves long.
pub(super) fn with_progress(builder: Builder, message: &'static str) -> (Builder, Option<ProgressBar>) {
    if !io::stderr().is_terminal() {
        return (builder, None);
    }
    let bar = ProgressBar::hidden();
    if let Ok(style) = ProgressStyle::with_template("{msg} [{wide_bar}] {pos}/{len} records ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    let shown = bar.clone();
    let builder = builder.on_progress(move |done, total| {
        if total < LONG_LOG {
            return;
        }
        shown.set_length(total);
        shown.set_position(done);
        if shown.is_hidden() {
            shown.set_draw_target(ProgressDrawTarget::stderr());
            shown.tick();
        }
    });
    (builder, Some(bar))
}
