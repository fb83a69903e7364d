//! The one place errors become SQLSTATEs.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
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
    pub const RESOURCES_EXHAUSTED: &str = "53000";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const INTERNAL_ERROR: &str = "XX000";
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
        DataFusionError::ResourcesExhausted(text) => (code::RESOURCES_EXHAUSTED, text.clone()),
        DataFusionError::ArrowError(e, _) => (code::DATA_EXCEPTION, e.to_string()),
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
