//! `CREATE ALERT RULE name ON table WHERE <predicate> [WINDOW '<interval>' HAVING count(*) > N]
//! [NOTIFY CHANNEL 'chan'] [WEBHOOK 'url']`, split into its parts. The predicate stays SQL
//! text; [`crate::CompiledRule`] checks it against the table.

use std::time::Duration;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

use crate::{RuleError, RuleSpec, Window};

/// Whether `sql` is a `CREATE ALERT RULE` statement (so a front end can route it here).
pub fn is_create_alert_rule(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    words == ["CREATE", "ALERT", "RULE"]
}

fn syntax(message: impl Into<String>) -> RuleError {
    RuleError::Syntax(message.into())
}

/// The significant tokens of `sql` (no whitespace or comments).
fn tokens(sql: &str) -> Result<Vec<Token>, RuleError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| syntax(e.to_string()))?;
    Ok(tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect())
}

fn is_word(token: &Token, keyword: &str) -> bool {
    matches!(token, Token::Word(Word { value, quote_style: None, .. }) if value.eq_ignore_ascii_case(keyword))
}

fn ident(token: Option<&Token>, what: &str) -> Result<String, RuleError> {
    match token {
        Some(Token::Word(w)) if w.keyword == Keyword::NoKeyword || w.quote_style.is_some() => {
            Ok(w.value.clone())
        }
        Some(Token::Word(w)) => Ok(w.value.clone()),
        other => Err(syntax(format!("expected {what}, found {}", shown(other)))),
    }
}

fn string(token: Option<&Token>, what: &str) -> Result<String, RuleError> {
    match token {
        Some(Token::SingleQuotedString(s)) => Ok(s.clone()),
        other => Err(syntax(format!(
            "expected {what} as a quoted string, found {}",
            shown(other)
        ))),
    }
}

fn shown(token: Option<&Token>) -> String {
    token.map_or_else(|| "the end".to_string(), |t| format!("\"{t}\""))
}

/// The clauses that may follow the predicate.
const CLAUSES: [&str; 3] = ["WINDOW", "NOTIFY", "WEBHOOK"];

/// Parses a `CREATE ALERT RULE` statement.
pub fn parse_create_rule(sql: &str) -> Result<RuleSpec, RuleError> {
    let sql = sql.trim().trim_end_matches(';');
    let tokens = tokens(sql)?;
    let mut i = 0;
    for keyword in ["CREATE", "ALERT", "RULE"] {
        if !tokens.get(i).is_some_and(|t| is_word(t, keyword)) {
            return Err(syntax(format!(
                "expected {keyword}, found {}",
                shown(tokens.get(i))
            )));
        }
        i += 1;
    }
    let name = ident(tokens.get(i), "the rule's name")?;
    i += 1;
    if !tokens.get(i).is_some_and(|t| is_word(t, "ON")) {
        return Err(syntax(format!(
            "expected ON, found {}",
            shown(tokens.get(i))
        )));
    }
    let table = ident(tokens.get(i + 1), "a table")?;
    i += 2;
    if !tokens.get(i).is_some_and(|t| is_word(t, "WHERE")) {
        return Err(syntax(format!(
            "expected WHERE, found {}",
            shown(tokens.get(i))
        )));
    }
    i += 1;

    // The predicate runs to the first clause keyword outside parentheses.
    let start = i;
    let mut depth = 0usize;
    while let Some(t) = tokens.get(i) {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            t if depth == 0 && CLAUSES.iter().any(|c| is_word(t, c)) => break,
            _ => {}
        }
        i += 1;
    }
    if i == start {
        return Err(syntax("expected a predicate after WHERE"));
    }
    let predicate: String = tokens[start..i]
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ");

    let mut spec = RuleSpec {
        name,
        table,
        predicate,
        window: None,
        channel: None,
        webhook: None,
    };
    while let Some(t) = tokens.get(i) {
        if is_word(t, "WINDOW") {
            i += 1;
            if tokens.get(i).is_some_and(|t| is_word(t, "INTERVAL")) {
                i += 1;
            }
            let text = string(tokens.get(i), "the window's length")?;
            let every = parse_interval(&text)?;
            i += 1;
            let expected = ["HAVING", "COUNT", "(", "*", ")", ">"];
            for word in expected {
                let ok = match tokens.get(i) {
                    Some(Token::LParen) => word == "(",
                    Some(Token::RParen) => word == ")",
                    Some(Token::Mul) => word == "*",
                    Some(Token::Gt) => word == ">",
                    Some(t) => is_word(t, word),
                    None => false,
                };
                if !ok {
                    return Err(syntax(format!(
                        "expected WINDOW '<interval>' HAVING count(*) > N, found {}",
                        shown(tokens.get(i))
                    )));
                }
                i += 1;
            }
            let more_than = match tokens.get(i) {
                Some(Token::Number(n, _)) => n
                    .parse::<u64>()
                    .map_err(|_| syntax(format!("expected a count, found {n}")))?,
                other => return Err(syntax(format!("expected a count, found {}", shown(other)))),
            };
            i += 1;
            spec.window = Some(Window { every, more_than });
        } else if is_word(t, "NOTIFY") {
            if !tokens.get(i + 1).is_some_and(|t| is_word(t, "CHANNEL")) {
                return Err(syntax("expected NOTIFY CHANNEL '<channel>'"));
            }
            spec.channel = Some(string(tokens.get(i + 2), "the channel")?);
            i += 3;
        } else if is_word(t, "WEBHOOK") {
            spec.webhook = Some(string(tokens.get(i + 1), "the webhook URL")?);
            i += 2;
        } else {
            return Err(syntax(format!("unexpected {}", shown(Some(t)))));
        }
    }
    Ok(spec)
}

/// `'1 minute'`, `'30s'`, `'2 hours'`.
fn parse_interval(text: &str) -> Result<Duration, RuleError> {
    let compact: String = text.split_whitespace().collect();
    let every = humantime::parse_duration(&compact)
        .map_err(|e| syntax(format!("invalid window length '{text}': {e}")))?;
    if every.is_zero() {
        return Err(syntax("the window's length must be positive"));
    }
    Ok(every)
}
