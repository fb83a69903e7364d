//! Any text through armorlake's SQL rewrite: it must never panic, and SQL it rewrites must
//! still parse (it only ever rewrites statements it parsed, so anything else is a bug in
//! how it builds or prints them).

#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if let Cow::Owned(out) = armorlake_rewrite::rewrite(sql) {
        assert!(
            Parser::parse_sql(&PostgreSqlDialect {}, &out).is_ok(),
            "{sql:?} was rewritten to SQL that does not parse: {out:?}"
        );
    }
});
