//! The merge of the configuration layers: defaults < `ARMORLAKE_*` environment < the
//! `--config` file < flags.
//!
//! clap already puts the environment over the defaults and remembers where each value came
//! from; [`Layer`] then puts a value from the file over anything that did not come from the
//! command line.

use clap::ArgMatches;
use clap::parser::ValueSource;

/// The parsed command line of one subcommand, deciding which layer wins.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    matches: &'a ArgMatches,
}

impl<'a> Layer<'a> {
    /// The layers of `matches` (a subcommand's matches).
    pub fn new(matches: &'a ArgMatches) -> Layer<'a> {
        Layer { matches }
    }

    /// Whether the option `id` (clap's id: the field's name) was given as a flag.
    pub fn given_as_flag(&self, id: &str) -> bool {
        matches!(
            self.matches
                .try_contains_id(id)
                .map(|_| self.matches.value_source(id)),
            Ok(Some(ValueSource::CommandLine))
        )
    }

    /// The value of the path option `id` (from a flag or the environment), if it has one.
    pub fn path(&self, id: &str) -> Option<std::path::PathBuf> {
        self.matches
            .try_get_one::<std::path::PathBuf>(id)
            .ok()
            .flatten()
            .cloned()
    }

    /// Sets `field` to the file's value unless a flag gave it.
    pub fn set<T>(&self, field: &mut T, id: &str, file: Option<T>) {
        if let Some(value) = file
            && !self.given_as_flag(id)
        {
            *field = value;
        }
    }

    /// [`Layer::set`] for an optional field.
    pub fn set_opt<T>(&self, field: &mut Option<T>, id: &str, file: Option<T>) {
        if let Some(value) = file
            && !self.given_as_flag(id)
        {
            *field = Some(value);
        }
    }
}
