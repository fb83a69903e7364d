//! armorlake only reads: every statement that would change data or schema is refused with
//! SQLSTATE 25006 before DataFusion sees it (DataFusion would otherwise happily create or
//! drop tables in the session's in-memory catalog).
//!
//! Statements are allowed by kind: queries, SET/SHOW, transactions, cursors, prepared
//! statements, EXPLAIN and COPY … TO of those. Anything else counts as a write.

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CopyTarget, Query, SetExpr, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};

use super::error;

/// Refuses writes, in both the simple and the extended protocol.
#[derive(Debug)]
pub(crate) struct ReadOnly;

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refusal(statement).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        refusal(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refusal(statement).map(Err)
    }
}

/// Why `statement` may not run, if it may not: it writes, or it would write a file on the
/// server (`COPY … TO 'file'`, `TO PROGRAM`; `TO STDOUT` is how rows are exported).
fn refusal(statement: &Statement) -> Option<PgWireError> {
    if let Statement::Copy {
        to: true, target, ..
    } = statement
        && !matches!(target, CopyTarget::Stdout)
    {
        return Some(error::server_file_copy());
    }
    write_command(statement).map(|command| error::read_only(&command))
}

/// PostgreSQL's command tag for `statement` if it writes, `None` if it only reads.
pub(crate) fn write_command(statement: &Statement) -> Option<String> {
    let reads = match statement {
        Statement::Query(query) if creates_table(query) => return Some("SELECT INTO".into()),
        Statement::Query(query) => return written_by(query).and_then(write_command),
        Statement::Explain { statement, .. } | Statement::Prepare { statement, .. } => {
            return write_command(statement);
        }
        Statement::Copy { to, .. } => *to,
        Statement::Set(_)
        | Statement::Reset(_)
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset { .. }
        | Statement::ShowObjects { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. }
        | Statement::ExplainTable { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Discard { .. }
        | Statement::Deallocate { .. }
        | Statement::Execute { .. }
        | Statement::Use(_)
        | Statement::LISTEN { .. }
        | Statement::UNLISTEN { .. } => true,
        _ => false,
    };
    (!reads).then(|| command_tag(statement))
}

/// Whether `query` is a `SELECT … INTO t`, which creates the table `t`.
fn creates_table(query: &Query) -> bool {
    match query.body.as_ref() {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::Query(q) => creates_table(q),
        _ => false,
    }
}

/// The INSERT/UPDATE/DELETE/MERGE inside a query (`WITH x AS (DELETE …) SELECT …`).
fn written_by(query: &Query) -> Option<&Statement> {
    let in_body = match query.body.as_ref() {
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => Some(s),
        SetExpr::Query(q) => written_by(q),
        _ => None,
    };
    in_body.or_else(|| {
        query
            .with
            .as_ref()?
            .cte_tables
            .iter()
            .find_map(|cte| written_by(&cte.query))
    })
}

/// PostgreSQL's command tag: `INSERT`, `CREATE TABLE`, `DROP VIEW`, `COPY FROM`, …
fn command_tag(statement: &Statement) -> String {
    match statement {
        Statement::Copy { .. } => return "COPY FROM".into(),
        Statement::Truncate { .. } => return "TRUNCATE TABLE".into(),
        _ => {}
    }
    let text = statement.to_string();
    let words: Vec<String> = text
        .split_whitespace()
        .take(8)
        .map(str::to_uppercase)
        .collect();
    let Some(first) = words.first() else {
        return "this statement".into();
    };
    if !matches!(first.as_str(), "CREATE" | "DROP" | "ALTER") {
        return first.clone();
    }
    const MODIFIERS: [&str; 10] = [
        "OR",
        "REPLACE",
        "TEMPORARY",
        "TEMP",
        "UNLOGGED",
        "GLOBAL",
        "LOCAL",
        "EXTERNAL",
        "UNIQUE",
        "RECURSIVE",
    ];
    let mut object = words[1..]
        .iter()
        .skip_while(|w| MODIFIERS.contains(&w.as_str()));
    match object.next() {
        Some(kind) if matches!(kind.as_str(), "MATERIALIZED" | "FOREIGN" | "EVENT") => {
            match object.next() {
                Some(next) => format!("{first} {kind} {next}"),
                None => format!("{first} {kind}"),
            }
        }
        Some(kind) => format!("{first} {kind}"),
        None => first.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn tag(sql: &str) -> Option<String> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        write_command(&statements[0])
    }

    #[test]
    fn writes_are_named_as_postgres_names_them() {
        let cases = [
            ("CREATE TABLE t (a int)", "CREATE TABLE"),
            ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE VIEW"),
            (
                "CREATE MATERIALIZED VIEW v AS SELECT 1",
                "CREATE MATERIALIZED VIEW",
            ),
            ("CREATE TEMP TABLE t AS SELECT 1", "CREATE TABLE"),
            ("CREATE SCHEMA s", "CREATE SCHEMA"),
            ("CREATE INDEX i ON alerts (pid)", "CREATE INDEX"),
            ("INSERT INTO alerts (pid) VALUES (1)", "INSERT"),
            ("UPDATE alerts SET pid = 1", "UPDATE"),
            ("DELETE FROM alerts", "DELETE"),
            ("DROP TABLE alerts", "DROP TABLE"),
            ("ALTER TABLE alerts ADD COLUMN x int", "ALTER TABLE"),
            ("TRUNCATE alerts", "TRUNCATE TABLE"),
            ("COPY alerts FROM STDIN", "COPY FROM"),
            ("SELECT * INTO stolen FROM alerts", "SELECT INTO"),
            ("GRANT SELECT ON alerts TO bob", "GRANT"),
            ("VACUUM alerts", "VACUUM"),
            (
                "WITH x AS (DELETE FROM alerts RETURNING *) SELECT * FROM x",
                "DELETE",
            ),
            ("EXPLAIN ANALYZE DELETE FROM alerts", "DELETE"),
        ];
        for (sql, expected) in cases {
            assert_eq!(tag(sql).as_deref(), Some(expected), "{sql}");
        }
    }

    #[test]
    fn reads_pass() {
        for sql in [
            "SELECT 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT 1 UNION SELECT 2",
            "EXPLAIN SELECT * FROM alerts",
            "SET statement_timeout = '1s'",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SHOW search_path",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH 10 FROM c",
            "CLOSE c",
            "DISCARD ALL",
            "DEALLOCATE ALL",
            "PREPARE p AS SELECT 1",
            "COPY alerts TO STDOUT",
            "COPY (SELECT 1) TO STDOUT",
        ] {
            assert_eq!(tag(sql), None, "{sql}");
        }
    }

    #[test]
    fn copies_to_server_files_are_refused() {
        for sql in [
            "COPY alerts TO '/tmp/alerts.csv'",
            "COPY (SELECT 1) TO PROGRAM 'cat'",
        ] {
            let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .unwrap()
                .remove(0);
            let Some(PgWireError::UserError(info)) = refusal(&statement) else {
                panic!("{sql} not refused");
            };
            assert_eq!(info.code, "42501", "{sql}");
        }
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, "COPY alerts TO STDOUT")
            .unwrap()
            .remove(0);
        assert!(refusal(&statement).is_none());
    }
}
