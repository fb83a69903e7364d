//! The alerting statements, answered before datafusion-postgres (and its read-only check)
//! sees them: `CREATE ALERT RULE …`, `DROP ALERT RULE [IF EXISTS] name`, `LISTEN channel`
//! and `UNLISTEN channel | *`. Only the simple query protocol carries them (psql, and
//! drivers' statements without parameters).

use std::sync::Arc;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use crate::alerting::{AlertError, Alerts, Session};

/// An alerting statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Statement {
    Create,
    Drop { name: String, if_exists: bool },
    Listen(String),
    Unlisten(Option<String>),
}

fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

fn syntax(message: &str) -> PgWireError {
    error("42601", message.to_string())
}

fn is(token: Option<&Token>, keyword: &str) -> bool {
    matches!(token, Some(Token::Word(Word { value, quote_style: None, .. })) if value.eq_ignore_ascii_case(keyword))
}

/// An identifier as PostgreSQL reads it: folded to lower case unless quoted.
fn identifier(token: Option<&Token>) -> Option<String> {
    match token {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_lowercase()),
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    }
}

/// The statement `sql` is, if it is one of the alerting statements.
fn recognize(sql: &str) -> Option<PgWireResult<Statement>> {
    let first = sql.split_whitespace().next()?.to_ascii_uppercase();
    if !matches!(first.as_str(), "CREATE" | "DROP" | "LISTEN" | "UNLISTEN") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut tokens: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    while matches!(tokens.last(), Some(Token::SemiColon)) {
        tokens.pop();
    }
    if tokens.contains(&Token::SemiColon) && first != "CREATE" {
        return None;
    }
    let at = |i: usize| tokens.get(i);
    let statement = match first.as_str() {
        "CREATE" if is(at(1), "ALERT") && is(at(2), "RULE") => Ok(Statement::Create),
        "DROP" if is(at(1), "ALERT") && is(at(2), "RULE") => {
            let if_exists = is(at(3), "IF") && is(at(4), "EXISTS");
            let i = if if_exists { 5 } else { 3 };
            match identifier(at(i)) {
                Some(name) if tokens.len() == i + 1 => Ok(Statement::Drop { name, if_exists }),
                _ => Err(syntax("expected DROP ALERT RULE [IF EXISTS] name")),
            }
        }
        "LISTEN" => match identifier(at(1)) {
            Some(channel) if tokens.len() == 2 => Ok(Statement::Listen(channel)),
            _ => Err(syntax("expected LISTEN channel")),
        },
        "UNLISTEN" => match (at(1), tokens.len()) {
            (Some(Token::Mul), 2) => Ok(Statement::Unlisten(None)),
            (t, 2) => identifier(t)
                .map(|c| Statement::Unlisten(Some(c)))
                .ok_or_else(|| syntax("expected UNLISTEN channel | *")),
            _ => Err(syntax("expected UNLISTEN channel | *")),
        },
        _ => return None,
    };
    Some(statement)
}

fn refused(e: AlertError) -> PgWireError {
    error(e.sqlstate(), e.to_string())
}

/// Answers `sql` if it is an alerting statement; `None` hands it on.
pub(crate) async fn answer<C: ClientInfo + ?Sized>(
    alerts: &Alerts,
    client: &C,
    sql: &str,
) -> Option<PgWireResult<Vec<Response>>> {
    let statement = match recognize(sql)? {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let session = || -> PgWireResult<Arc<Session>> {
        client
            .session_extensions()
            .get::<Session>()
            .ok_or_else(|| error("0A000", "LISTEN is not available on this connection".into()))
    };
    let result = match statement {
        Statement::Create => alerts
            .create_rule(sql)
            .await
            .map(|_| Tag::new("CREATE ALERT RULE"))
            .map_err(refused),
        Statement::Drop { name, if_exists } => alerts
            .drop_rule(&name, if_exists)
            .await
            .map(|()| Tag::new("DROP ALERT RULE"))
            .map_err(refused),
        Statement::Listen(channel) => session().map(|s| {
            s.listen(&channel);
            Tag::new("LISTEN")
        }),
        Statement::Unlisten(channel) => session().map(|s| {
            s.unlisten(channel.as_deref());
            Tag::new("UNLISTEN")
        }),
    };
    Some(result.map(|tag| vec![Response::Execution(tag)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_the_alerting_statements() {
        let ok = |sql: &str| recognize(sql).map(|r| r.ok());
        assert_eq!(ok("SELECT 1"), None);
        assert_eq!(ok("CREATE TABLE t (a int)"), None);
        assert_eq!(
            ok("create alert rule r on alerts where true;"),
            Some(Some(Statement::Create))
        );
        assert_eq!(
            ok("DROP ALERT RULE IF EXISTS Burst"),
            Some(Some(Statement::Drop {
                name: "burst".into(),
                if_exists: true
            }))
        );
        assert_eq!(
            ok("LISTEN \"Sec\";"),
            Some(Some(Statement::Listen("Sec".into())))
        );
        assert_eq!(ok("UNLISTEN *"), Some(Some(Statement::Unlisten(None))));
        assert_eq!(ok("LISTEN a b"), Some(None));
    }
}
