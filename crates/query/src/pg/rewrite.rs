//! armorlake's own rewrites of a client's SQL, before datafusion-postgres parses it, for
//! catalog queries real clients send that would otherwise fail or answer wrongly:
//!
//! - `pg_proc.oid = pg_type.typreceive` (and `typsend`, `typinput`, …): these columns are
//!   `regproc` in PostgreSQL, an OID; datafusion-pg-catalog's `pg_type` holds the function's
//!   name, so the join compares by name (`pg_proc.proname = …`). Npgsql's type loading
//!   inner-joins on it and drops every type it cannot join.
//! - `current_setting(…)` is called as `pg_catalog.current_setting(…)`: datafusion-pg-catalog
//!   replaces Grafana's search_path subquery (which calls it) with `''` because it has no
//!   `current_setting`; armorlake has one, and the qualified name keeps the subquery.
//!
//! - A scalar function in FROM (`FROM string_to_array(…) s`, in Grafana's pickers): a
//!   relation of one row whose one column is named after the alias, as PostgreSQL makes it;
//!   DataFusion only knows table functions there. And `FROM generate_series(…) AS i`
//!   names its column `i`, as in PostgreSQL (DataFusion calls it `value`).
//!
//! - The bare `user` (Grafana's pickers) is `current_user`, as in PostgreSQL.
//!
//! SQL that needs none of this passes through untouched (same text, same error positions).

use std::borrow::Cow;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, ObjectNamePart, SetExpr, Statement,
    TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Scalar functions clients call in FROM.
const SCALAR_IN_FROM: &[&str] = &["string_to_array"];

/// `pg_type`'s `regproc` columns.
const REGPROC_COLUMNS: &[&str] = &[
    "typreceive",
    "typsend",
    "typinput",
    "typoutput",
    "typmodin",
    "typmodout",
    "typanalyze",
];

/// `sql` as armorlake runs it.
pub(crate) fn rewrite(sql: &str) -> Cow<'_, str> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("current_setting")
        && !REGPROC_COLUMNS.iter().any(|c| lower.contains(c))
        && !SCALAR_IN_FROM.iter().any(|c| lower.contains(c))
        && !lower.contains("generate_series")
        && !lower.contains("user")
    {
        return Cow::Borrowed(sql);
    }
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        // The error is for the parser that runs next to report.
        return Cow::Borrowed(sql);
    };
    let mut rewriter = Rewriter { changed: false };
    for statement in &mut statements {
        let _ = statement.visit(&mut rewriter);
    }
    if !rewriter.changed {
        return Cow::Borrowed(sql);
    }
    Cow::Owned(
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";\n"),
    )
}

struct Rewriter {
    changed: bool,
}

/// The last part of a column reference (`a.typreceive` → `typreceive`).
fn column(e: &Expr) -> Option<&Ident> {
    match e {
        Expr::Identifier(i) => Some(i),
        Expr::CompoundIdentifier(parts) => parts.last(),
        _ => None,
    }
}

fn is_regproc(e: &Expr) -> bool {
    column(e).is_some_and(|i| {
        REGPROC_COLUMNS
            .iter()
            .any(|c| i.value.eq_ignore_ascii_case(c))
    })
}

/// `x.oid` → `x.proname`, if `e` is a qualified `oid` column.
fn oid_to_proname(e: &mut Expr) -> bool {
    if let Expr::CompoundIdentifier(parts) = e
        && parts.len() >= 2
        && let Some(last) = parts.last_mut()
        && last.value.eq_ignore_ascii_case("oid")
    {
        *last = Ident::new("proname");
        return true;
    }
    false
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if is_bare_user(expr) {
            if let Some(current_user) = expression("current_user") {
                *expr = current_user;
                self.changed = true;
            }
            return ControlFlow::Continue(());
        }
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = expr
            && ((is_regproc(right) && oid_to_proname(left))
                || (is_regproc(left) && oid_to_proname(right)))
        {
            self.changed = true;
            return ControlFlow::Continue(());
        }
        match expr {
            Expr::Function(f)
                if f.name.0.len() == 1
                    && matches!(&f.name.0[0], ObjectNamePart::Identifier(i)
                        if i.value.eq_ignore_ascii_case("current_setting")) =>
            {
                f.name = ObjectName(vec![
                    ObjectNamePart::Identifier(Ident::new("pg_catalog")),
                    ObjectNamePart::Identifier(Ident::new("current_setting")),
                ]);
                self.changed = true;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let Some(derived) = scalar_in_from(factor) {
            *factor = derived;
            self.changed = true;
        } else if name_series_column(factor) {
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

/// `user` without parentheses: an identifier, or (as sqlparser reads the keyword) a
/// function call without arguments.
fn is_bare_user(e: &Expr) -> bool {
    match e {
        Expr::Identifier(i) => i.quote_style.is_none() && i.value.eq_ignore_ascii_case("user"),
        Expr::Function(f) => {
            matches!(
                f.args,
                datafusion::sql::sqlparser::ast::FunctionArguments::None
            ) && matches!(f.name.0.as_slice(), [ObjectNamePart::Identifier(i)]
                    if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("user"))
        }
        _ => false,
    }
}

/// The expression `sql` (`SELECT sql`).
fn expression(sql: &str) -> Option<Expr> {
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, &format!("SELECT {sql}")).ok()?;
    let Statement::Query(query) = parsed.pop()? else {
        return None;
    };
    let SetExpr::Select(select) = *query.body else {
        return None;
    };
    match select.projection.into_iter().next()? {
        datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e) => Some(e),
        _ => None,
    }
}

/// `generate_series(…) AS i` → `generate_series(…) AS i(i)`.
fn name_series_column(factor: &mut TableFactor) -> bool {
    if let TableFactor::Table {
        name,
        alias: Some(alias),
        args: Some(_),
        ..
    } = factor
        && alias.columns.is_empty()
        && let [ObjectNamePart::Identifier(function)] = name.0.as_slice()
        && function.value.eq_ignore_ascii_case("generate_series")
    {
        alias.columns = vec![TableAliasColumnDef::from_name(alias.name.value.clone())];
        return true;
    }
    false
}

/// `f(args) AS a` in FROM, for a scalar `f`, as `(SELECT f(args) AS a) AS a`.
fn scalar_in_from(factor: &TableFactor) -> Option<TableFactor> {
    let TableFactor::Table {
        name,
        alias: Some(alias),
        args: Some(args),
        ..
    } = factor
    else {
        return None;
    };
    let [ObjectNamePart::Identifier(function)] = name.0.as_slice() else {
        return None;
    };
    if !SCALAR_IN_FROM
        .iter()
        .any(|f| function.value.eq_ignore_ascii_case(f))
    {
        return None;
    }
    let args = args
        .args
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT * FROM (SELECT {function}({args}) AS {column}) AS {alias}",
        column = alias.name,
    );
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
    let Statement::Query(query) = parsed.pop()? else {
        return None;
    };
    let SetExpr::Select(select) = *query.body else {
        return None;
    };
    select.from.into_iter().next().map(|t| t.relation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regproc_joins_compare_names() {
        let sql = "SELECT t.typname FROM pg_type AS t JOIN pg_proc ON pg_proc.oid = t.typreceive";
        assert_eq!(
            rewrite(sql),
            "SELECT t.typname FROM pg_type AS t JOIN pg_proc ON pg_proc.proname = t.typreceive"
        );
        let sql = "SELECT 1 FROM pg_type a JOIN pg_proc p ON a.typsend = p.oid";
        assert!(rewrite(sql).contains("a.typsend = p.proname"));
    }

    #[test]
    fn current_setting_is_qualified() {
        assert_eq!(
            rewrite("SELECT current_setting('search_path')"),
            "SELECT pg_catalog.current_setting('search_path')"
        );
    }

    #[test]
    fn scalar_functions_in_from_become_one_row() {
        assert_eq!(
            rewrite("SELECT s[1] FROM string_to_array('a,b', ',') s"),
            "SELECT s[1] FROM (SELECT string_to_array('a,b', ',') AS s) AS s"
        );
    }

    #[test]
    fn series_columns_take_the_alias() {
        assert_eq!(
            rewrite("SELECT i FROM generate_series(1, 3) AS i"),
            "SELECT i FROM generate_series(1, 3) AS i (i)"
        );
        let sql = "SELECT value FROM generate_series(1, 3)";
        assert!(matches!(rewrite(sql), Cow::Borrowed(_)));
    }

    #[test]
    fn bare_user_is_current_user() {
        assert_eq!(rewrite("SELECT user"), "SELECT current_user");
    }

    #[test]
    fn other_sql_passes_untouched() {
        for sql in [
            "SELECT 1",
            "select  count(*) from alerts -- typreceive",
            "SELEC current_setting(",
            "SELECT oid FROM pg_type WHERE typreceive = 'x'",
        ] {
            assert!(
                matches!(rewrite(sql), Cow::Borrowed(s) if s == sql),
                "{sql}"
            );
        }
    }
}
