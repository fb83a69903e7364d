//! The one place errors become SQLSTATEs: classification of DataFusion and parser errors,
//! and every error armorlake itself sends (authentication, TLS, limits, read-only, cancel).

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

/// SQLSTATE codes armorlake sends.
mod code {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const DATA_EXCEPTION: &str = "22000";
    pub const QUERY_CANCELED: &str = "57014";
    pub const OUT_OF_MEMORY: &str = "53200";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
}

/// Rewrites a pgwire API error (a DataFusion or parser error) into a PostgreSQL error with
/// the SQLSTATE a client expects. Errors that already carry a code are left as they are.
pub(crate) fn classify(error: &mut PgWireError) {
    let PgWireError::ApiError(inner) = error else {
        return;
    };
    let info = if let Some(df) = inner.downcast_ref::<DataFusionError>() {
        to_error_info(df)
    } else if let Some(p) = inner.downcast_ref::<ParserError>() {
        error_info(code::SYNTAX_ERROR, p.to_string())
    } else {
        error_info(code::INTERNAL_ERROR, inner.to_string())
    };
    *error = PgWireError::UserError(Box::new(info));
}

fn error_info(code: &str, message: String) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_string(), code.to_string(), message)
}

fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(code, message)))
}

/// A FATAL error: the server closes the connection after sending it.
fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message,
    )))
}

/// Classifies an error raised while running `query`, and for a syntax error adds the
/// position (the ErrorResponse `P` field: 1-based character index into `query`) when the
/// parser reported a line and column.
pub(crate) fn for_query(mut error: PgWireError, query: &str) -> PgWireError {
    classify(&mut error);
    if let PgWireError::UserError(info) = &mut error
        && info.code == code::SYNTAX_ERROR
        && info.position.is_none()
    {
        // datafusion-postgres rewrites some tokens before parsing, which loses their
        // locations; parsing the client's text again recovers them.
        let located = position(&info.message, query).or_else(|| {
            let reparsed = Parser::parse_sql(&PostgreSqlDialect {}, query).err()?;
            position(&reparsed.to_string(), query)
        });
        info.position = located.map(|p| p.to_string());
        postgres_wording(info);
    }
    error
}

/// sqlparser's `Expected: X, found: Y` as PostgreSQL words it (`syntax error at or near
/// "Y"`), keeping sqlparser's text as the detail.
fn postgres_wording(info: &mut ErrorInfo) {
    let Some(found) = info.message.split("found: ").nth(1) else {
        return;
    };
    let token = found.split(" at Line: ").next().unwrap_or(found).trim();
    let wording = if token == "EOF" {
        "syntax error at end of input".to_string()
    } else {
        format!("syntax error at or near \"{token}\"")
    };
    let original = std::mem::replace(&mut info.message, wording);
    info.detail.get_or_insert(original);
}

/// The 1-based character index of the `Line: L, Column: C` a sqlparser error names.
fn position(message: &str, query: &str) -> Option<usize> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let column: usize = rest
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    if line == 0 || column == 0 {
        return None;
    }
    let before: usize = query
        .split_inclusive('\n')
        .take(line - 1)
        .map(|l| l.chars().count())
        .sum();
    let p = before + column;
    (p <= query.chars().count() + 1).then_some(p)
}

/// DDL or DML on armorlake, which only reads: `command` is PostgreSQL's command tag
/// (`INSERT`, `CREATE TABLE`, …).
pub(crate) fn read_only(command: &str) -> PgWireError {
    let mut info = error_info(
        code::READ_ONLY_SQL_TRANSACTION,
        format!("cannot execute {command} in a read-only transaction"),
    );
    info.hint = Some("armorlake is read-only: its tables are filled from KubeArmor".into());
    PgWireError::UserError(Box::new(info))
}

/// The client cancelled the running statement (CancelRequest).
pub(crate) fn canceled_by_user() -> PgWireError {
    error(
        code::QUERY_CANCELED,
        "canceling statement due to user request".into(),
    )
}

/// The statement ran longer than `statement_timeout`.
pub(crate) fn statement_timeout() -> PgWireError {
    error(
        code::QUERY_CANCELED,
        "canceling statement due to statement timeout".into(),
    )
}

/// More sessions than `--max-connections`.
pub(crate) fn too_many_connections() -> PgWireError {
    fatal(
        code::TOO_MANY_CONNECTIONS,
        "sorry, too many clients already".into(),
    )
}

/// Wrong password, or a user that does not exist (the client cannot tell which).
pub(crate) fn password_failed(user: &str) -> PgWireError {
    fatal(
        code::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

/// A plaintext connection to a server started with `--tls-required`.
pub(crate) fn tls_required() -> PgWireError {
    let mut info = ErrorInfo::new(
        "FATAL".to_string(),
        code::INVALID_AUTHORIZATION.to_string(),
        "this server accepts only TLS connections, and this connection is not encrypted".into(),
    );
    info.hint = Some("connect with sslmode=require".into());
    PgWireError::UserError(Box::new(info))
}

/// The client did not follow the authentication protocol.
pub(crate) fn authentication_protocol(message: String) -> PgWireError {
    fatal(code::PROTOCOL_VIOLATION, message)
}

/// A startup parameter with a value armorlake cannot use.
pub(crate) fn invalid_parameter(name: &str, value: &str) -> PgWireError {
    fatal(
        code::INVALID_PARAMETER_VALUE,
        format!("invalid value for parameter \"{name}\": \"{value}\""),
    )
}

/// A statement's option armorlake cannot use (22023).
pub(crate) fn invalid_option(message: String) -> PgWireError {
    error(code::INVALID_PARAMETER_VALUE, message)
}

/// A statement armorlake does not support (0A000).
pub(crate) fn feature_not_supported(message: String) -> PgWireError {
    error(code::FEATURE_NOT_SUPPORTED, message)
}

/// `COPY … TO` a file or program: it would write on the server (42501, as PostgreSQL
/// answers a user without `pg_write_server_files`).
pub(crate) fn server_file_copy() -> PgWireError {
    let mut info = error_info(
        code::INSUFFICIENT_PRIVILEGE,
        "COPY to a file or program is not allowed: it would write on the server".into(),
    );
    info.hint = Some("Use COPY … TO STDOUT (psql: \\copy) to receive the rows.".into());
    PgWireError::UserError(Box::new(info))
}

/// An ERROR with SQLSTATE `code` about a setting (`SET`, `SHOW`, `RESET`).
pub(crate) fn setting_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(code, message)))
}

/// The PostgreSQL error for a DataFusion error.
pub fn to_error_info(error: &DataFusionError) -> ErrorInfo {
    let root = error.find_root();
    let (code, message) = match root {
        DataFusionError::SQL(e, _) => (code::SYNTAX_ERROR, e.to_string()),
        DataFusionError::SchemaError(e, _) => {
            let text = e.to_string();
            if text.contains("No field named") {
                (code::UNDEFINED_COLUMN, text)
            } else {
                (code::UNDEFINED_TABLE, text)
            }
        }
        DataFusionError::Plan(text) => plan_error(text),
        DataFusionError::NotImplemented(text) => (code::FEATURE_NOT_SUPPORTED, text.clone()),
        // DataFusion's memory pools: the statement needed more than its memory limit.
        DataFusionError::ResourcesExhausted(text) => (
            code::OUT_OF_MEMORY,
            format!(
                "out of memory: the statement exceeded its memory limit (--query-memory-limit): {text}"
            ),
        ),
        DataFusionError::ArrowError(e, _) => (code::DATA_EXCEPTION, e.to_string()),
        DataFusionError::Execution(text)
            if text.starts_with("unrecognized configuration parameter") =>
        {
            (code::UNDEFINED_OBJECT, text.clone())
        }
        DataFusionError::Execution(text) if text.contains("unreachable") => {
            (code::CONNECTION_FAILURE, text.clone())
        }
        // An operator that went away between planning and execution.
        DataFusionError::External(e) if is_transport_error(&e.to_string()) => (
            code::CONNECTION_FAILURE,
            format!("an operator became unreachable during the query: {e}"),
        ),
        other => (code::INTERNAL_ERROR, other.to_string()),
    };
    error_info(code, message)
}

fn is_transport_error(text: &str) -> bool {
    [
        "tcp connect error",
        "transport error",
        "Connection refused",
        "connection reset",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Planning errors: DataFusion names them only in text.
fn plan_error(text: &str) -> (&'static str, String) {
    if let Some(name) = text
        .strip_prefix("table '")
        .and_then(|rest| rest.strip_suffix("' not found"))
    {
        // PostgreSQL's own wording, with the name as the user wrote it.
        let short = name.rsplit('.').next().unwrap_or(name);
        return (
            code::UNDEFINED_TABLE,
            format!("relation \"{short}\" does not exist"),
        );
    }
    if text.contains("Invalid function") || text.contains("function") && text.contains("not found")
    {
        return (code::UNDEFINED_FUNCTION, text.to_string());
    }
    if text.contains("cancel") {
        return (code::QUERY_CANCELED, text.to_string());
    }
    (code::SYNTAX_ERROR, text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_table_is_42p01_in_postgres_words() {
        let e = DataFusionError::Plan("table 'kubearmor.public.nope' not found".into());
        let info = to_error_info(&e);
        assert_eq!(info.code, "42P01");
        assert_eq!(info.message, "relation \"nope\" does not exist");
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let query = "SELECT 1;\nSELEC 2";
        let parser = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            query,
        );
        let Err(e) = parser else {
            panic!("parsed");
        };
        let e = for_query(PgWireError::ApiError(Box::new(e)), query);
        let PgWireError::UserError(info) = e else {
            panic!("not classified: {e:?}");
        };
        assert_eq!(info.code, "42601");
        assert_eq!(info.position.as_deref(), Some("11"), "{}", info.message);
        assert_eq!(info.message, "syntax error at or near \"SELEC\"");

        // No location in the message: found by parsing the query again.
        let query = "select * from alerts wher pid = 1";
        let e = ParserError::ParserError("Expected: end of statement, found: pid".into());
        let PgWireError::UserError(info) = for_query(PgWireError::ApiError(Box::new(e)), query)
        else {
            panic!("not classified");
        };
        assert_eq!(info.position.as_deref(), Some("27"));
        assert_eq!(info.message, "syntax error at or near \"pid\"");
        assert_eq!(position("x at Line: 1, Column: 3", "ab"), Some(3));
        assert_eq!(position("x at Line: 9, Column: 9", "ab"), None);
        assert_eq!(position("no location", "ab"), None);
    }

    #[test]
    fn armorlake_errors_have_postgres_codes_and_severities() {
        let cases = [
            (read_only("INSERT"), "25006", "ERROR"),
            (canceled_by_user(), "57014", "ERROR"),
            (statement_timeout(), "57014", "ERROR"),
            (too_many_connections(), "53300", "FATAL"),
            (password_failed("u"), "28P01", "FATAL"),
            (tls_required(), "28000", "FATAL"),
        ];
        for (e, code, severity) in cases {
            let PgWireError::UserError(info) = e else {
                panic!("not a user error");
            };
            assert_eq!(
                (info.code.as_str(), info.severity.as_str()),
                (code, severity)
            );
        }
    }

    #[test]
    fn api_errors_are_rewritten_and_user_errors_kept() {
        let mut e = PgWireError::ApiError(Box::new(DataFusionError::Plan(
            "table 'a.b.c' not found".into(),
        )));
        classify(&mut e);
        assert!(matches!(&e, PgWireError::UserError(i) if i.code == "42P01"));

        let mut e = PgWireError::UserError(Box::new(error_info("57014", "x".into())));
        classify(&mut e);
        assert!(matches!(&e, PgWireError::UserError(i) if i.code == "57014"));
    }
}
