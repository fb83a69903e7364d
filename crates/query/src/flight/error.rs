//! Errors as gRPC statuses. The SQLSTATE comes from the one mapping the PostgreSQL front end
//! uses ([`crate::pg::to_error_info`]); the status code follows from it, and the SQLSTATE
//! rides along in the `x-sqlstate` metadata.

use datafusion::error::DataFusionError;
use tonic::{Code, Status};

use crate::pg::to_error_info;

/// The status a client sees for a failed query, with the planner's message.
pub(crate) fn status(error: &DataFusionError) -> Status {
    let info = to_error_info(error);
    let mut status = Status::new(code_for(&info.code), info.message);
    if let Ok(value) = info.code.parse() {
        status.metadata_mut().insert("x-sqlstate", value);
    }
    status
}

/// The gRPC code of a SQLSTATE.
fn code_for(sqlstate: &str) -> Code {
    match sqlstate {
        "42P01" => Code::NotFound,
        "0A000" => Code::Unimplemented,
        "57014" => Code::Cancelled,
        "08006" => Code::Unavailable,
        "XX000" => Code::Internal,
        s if s.starts_with("53") => Code::ResourceExhausted,
        s if s.starts_with("28") => Code::Unauthenticated,
        // Syntax, unknown column or function, bad data: the client's query is wrong.
        s if s.starts_with("42") || s.starts_with("22") => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

/// A request the client got wrong.
pub(crate) fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planner_errors_keep_their_message() {
        let e = DataFusionError::Plan("table 'kubearmor.public.nope' not found".into());
        let s = status(&e);
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "relation \"nope\" does not exist");
        assert_eq!(s.metadata().get("x-sqlstate").unwrap(), "42P01");

        let e = DataFusionError::Plan("Invalid function 'nope'".into());
        assert_eq!(status(&e).code(), Code::InvalidArgument);
    }
}
