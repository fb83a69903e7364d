//! `COPY table|(query) TO STDOUT`, in PostgreSQL's text and CSV formats: what psql's
//! `\copy … to` and pgjdbc's `CopyManager` send to export rows.
//!
//! The statement runs as the query `SELECT columns FROM table` (or its own query) through
//! the session's ordinary path, so it gets the same limits, settings, errors and metrics
//! as any query; its rows, already in PostgreSQL's text form, are then written as COPY
//! lines, one CopyData message per row as PostgreSQL sends them. Binary COPY is refused
//! (0A000). `COPY … TO 'file'` and `TO PROGRAM` never get here: they would write on the
//! server, and [`super::readonly`] refuses them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::pgwire::api::results::{CopyResponse, FieldInfo, Response};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::copy::CopyData;
use datafusion_postgres::pgwire::messages::data::DataRow;
use futures::StreamExt;

use super::error;

/// A `COPY … TO STDOUT` statement: the query whose rows it writes, and how.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CopyTo {
    /// The query that gives the rows.
    pub(crate) query: String,
    csv: bool,
    delimiter: u8,
    null: Vec<u8>,
    header: bool,
    quote: u8,
    escape: u8,
}

impl CopyTo {
    /// The COPY TO STDOUT in `sql`, if `sql` is one: `None` for anything else (other
    /// statements run as they are), an error for options armorlake cannot honour.
    pub(crate) fn parse(sql: &str) -> Option<PgWireResult<CopyTo>> {
        let start = sql.trim_start();
        if !start
            .get(..4)
            .is_some_and(|word| word.eq_ignore_ascii_case("copy"))
        {
            return None;
        }
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        if statements.len() != 1 {
            return None;
        }
        let Statement::Copy {
            source,
            to: true,
            target: CopyTarget::Stdout,
            options,
            legacy_options,
            ..
        } = statements.pop()?
        else {
            return None;
        };
        let query = match source {
            CopySource::Query(query) => query.to_string(),
            CopySource::Table {
                table_name,
                columns,
            } => {
                let columns = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!("SELECT {columns} FROM {table_name}")
            }
        };
        Some(CopyTo::with_options(query, &options, &legacy_options))
    }

    fn with_options(
        query: String,
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> PgWireResult<CopyTo> {
        let mut copy = CopyTo {
            query,
            csv: false,
            delimiter: b'\t',
            null: b"\\N".to_vec(),
            header: false,
            quote: b'"',
            escape: b'"',
        };
        let (mut delimiter, mut null, mut escape) = (None, None, None);
        for option in options {
            match option {
                CopyOption::Format(format) => match format.value.to_ascii_lowercase().as_str() {
                    "text" => copy.csv = false,
                    "csv" => copy.csv = true,
                    "binary" => return Err(unsupported("COPY in binary format")),
                    other => {
                        return Err(error::invalid_option(format!(
                            "COPY format \"{other}\" not recognized"
                        )));
                    }
                },
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => copy.header = *h,
                CopyOption::Quote(c) => copy.quote = ascii(*c, "COPY quote")?,
                CopyOption::Escape(c) => escape = Some(*c),
                CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") => {}
                other => return Err(unsupported(&format!("COPY option {other}"))),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => return Err(unsupported("COPY in binary format")),
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Csv(csv) => {
                    copy.csv = true;
                    for option in csv {
                        match option {
                            CopyLegacyCsvOption::Header => copy.header = true,
                            CopyLegacyCsvOption::Quote(c) => {
                                copy.quote = ascii(*c, "COPY quote")?;
                            }
                            CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                            other => {
                                return Err(unsupported(&format!("COPY option {other}")));
                            }
                        }
                    }
                }
                other => return Err(unsupported(&format!("COPY option {other}"))),
            }
        }
        if copy.csv {
            copy.delimiter = b',';
            copy.null = Vec::new();
        }
        if let Some(c) = delimiter {
            copy.delimiter = ascii(c, "COPY delimiter")?;
        }
        if let Some(s) = null {
            copy.null = s.into_bytes();
        }
        copy.escape = match escape {
            Some(c) => ascii(c, "COPY escape")?,
            None => copy.quote,
        };
        if copy.delimiter == b'\n' || copy.delimiter == b'\r' || copy.delimiter == b'\\' {
            return Err(error::invalid_option(
                "COPY delimiter cannot be newline, carriage return or backslash".into(),
            ));
        }
        Ok(copy)
    }

    /// `response`, the rows of [`Self::query`], as the COPY's data.
    pub(crate) fn respond(self, response: Response) -> Response {
        let Response::Query(query) = response else {
            return response;
        };
        let columns = query.row_schema.len();
        let mut header = self.header.then(|| self.header_line(&query.row_schema));
        let rows = query.data_rows.map(move |row| {
            let row = row?;
            let mut line = BytesMut::with_capacity(row.data.len() + 16);
            if let Some(header) = header.take() {
                // Sent with the first row, so that the command tag counts rows only.
                line.put_slice(&header);
            }
            self.line(&row, &mut line)?;
            Ok(CopyData::new(line.freeze()))
        });
        Response::CopyOut(CopyResponse::new(0, columns, rows))
    }

    fn header_line(&self, fields: &[FieldInfo]) -> Bytes {
        let mut line = BytesMut::new();
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                line.put_u8(self.delimiter);
            }
            self.value(field.name().as_bytes(), &mut line);
        }
        line.put_u8(b'\n');
        line.freeze()
    }

    /// One row as a COPY line, appended to `out`.
    fn line(&self, row: &DataRow, out: &mut BytesMut) -> PgWireResult<()> {
        let mut data = &row.data[..];
        for i in 0..row.field_count.max(0) {
            if i > 0 {
                out.put_u8(self.delimiter);
            }
            if data.remaining() < 4 {
                return Err(malformed());
            }
            let len = data.get_i32();
            if len < 0 {
                out.put_slice(&self.null);
                continue;
            }
            let len = len as usize;
            if data.remaining() < len {
                return Err(malformed());
            }
            self.value(&data[..len], out);
            data.advance(len);
        }
        out.put_u8(b'\n');
        Ok(())
    }

    /// One non-NULL value, escaped or quoted as the format wants.
    fn value(&self, value: &[u8], out: &mut BytesMut) {
        if self.csv {
            let quoted = value.is_empty() && self.null.is_empty()
                || value == self.null.as_slice()
                || value
                    .iter()
                    .any(|&b| b == self.delimiter || b == self.quote || b == b'\n' || b == b'\r');
            if !quoted {
                out.put_slice(value);
                return;
            }
            out.put_u8(self.quote);
            for &b in value {
                if b == self.quote || b == self.escape {
                    out.put_u8(self.escape);
                }
                out.put_u8(b);
            }
            out.put_u8(self.quote);
            return;
        }
        let mut start = 0;
        for (i, &b) in value.iter().enumerate() {
            let escaped = match b {
                b'\\' => b'\\',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' if self.delimiter == b'\t' => b't',
                0x08 => b'b',
                0x0c => b'f',
                0x0b => b'v',
                b if b == self.delimiter => b,
                _ => continue,
            };
            out.put_slice(&value[start..i]);
            out.put_u8(b'\\');
            out.put_u8(escaped);
            start = i + 1;
        }
        out.put_slice(&value[start..]);
    }
}

/// `c` as the single byte COPY's options must be.
fn ascii(c: char, what: &str) -> PgWireResult<u8> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| error::invalid_option(format!("{what} must be a single one-byte character")))
}

fn unsupported(what: &str) -> PgWireError {
    error::feature_not_supported(format!("{what} is not supported"))
}

fn malformed() -> PgWireError {
    PgWireError::ApiError("a malformed row for COPY".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(sql: &str) -> CopyTo {
        CopyTo::parse(sql).unwrap().unwrap()
    }

    fn line(copy: &CopyTo, values: &[Option<&str>]) -> String {
        let mut out = BytesMut::new();
        copy.line(&super::super::output::data_row(values), &mut out)
            .unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn copy_statements_become_queries() {
        assert_eq!(copy("COPY alerts TO STDOUT").query, "SELECT * FROM alerts");
        assert_eq!(
            copy("copy alerts (pod_name, \"severity\") to stdout").query,
            "SELECT pod_name, \"severity\" FROM alerts"
        );
        assert_eq!(
            copy("COPY (SELECT 1 AS a) TO STDOUT WITH (FORMAT csv)").query,
            "SELECT 1 AS a"
        );
        for other in [
            "SELECT 1",
            "COPY alerts FROM STDIN",
            "COPY alerts TO '/tmp/x'",
            "COPY alerts TO STDOUT; SELECT 1",
        ] {
            assert!(CopyTo::parse(other).is_none(), "{other}");
        }
        for refused in [
            "COPY alerts TO STDOUT (FORMAT binary)",
            "COPY alerts TO STDOUT BINARY",
            "COPY alerts TO STDOUT (FORMAT xml)",
            "COPY alerts TO STDOUT (DELIMITER '\\')",
        ] {
            assert!(CopyTo::parse(refused).unwrap().is_err(), "{refused}");
        }
    }

    #[test]
    fn text_format_escapes_as_postgres_does() {
        let text = copy("COPY t TO STDOUT");
        assert_eq!(
            line(
                &text,
                &[Some("a\tb"), None, Some("back\\slash\nline"), Some("")]
            ),
            "a\\tb\t\\N\tback\\\\slash\\nline\t\n"
        );
        let piped = copy("COPY t TO STDOUT (DELIMITER '|', NULL 'nil')");
        assert_eq!(line(&piped, &[Some("a|b\tc"), None]), "a\\|b\tc|nil\n");
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let csv = copy("COPY t TO STDOUT WITH (FORMAT csv, HEADER true)");
        assert_eq!(
            line(
                &csv,
                &[
                    Some("plain"),
                    Some("a,b"),
                    Some("say \"hi\""),
                    Some(""),
                    None
                ]
            ),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"\",\n"
        );
        assert!(csv.header);
        let legacy = copy("COPY t TO STDOUT CSV HEADER");
        assert!(legacy.csv && legacy.header);
        assert_eq!(line(&legacy, &[Some("{a,b}")]), "\"{a,b}\"\n");
    }
}
