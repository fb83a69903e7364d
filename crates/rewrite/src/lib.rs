//! armorlake's own rewrites of a client's SQL, before datafusion-postgres parses it, for
//! catalog queries real clients send that would otherwise fail or answer wrongly. A crate
//! of its own (sqlparser only) so that it can be fuzzed without DataFusion (fuzz/).
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
//! - `x IN (SELECT …)` in a select list or ORDER BY (Grafana's table picker sorts the
//!   tables on the search path first that way): DataFusion plans `IN (subquery)` only in
//!   filters. It becomes a LEFT JOIN of the subquery's distinct values on `x`, and the test
//!   `CASE WHEN v IS NOT NULL THEN true WHEN x IS NULL THEN NULL ELSE false END` over it
//!   (the same answer, except when the subquery yields NULL and nothing matches: PostgreSQL
//!   says NULL there, this says false).
//!
//! SQL that needs none of this passes through untouched (same text, same error positions).

use std::borrow::Cow;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Distinct, Expr, GroupByExpr, Ident, ObjectName, ObjectNamePart, OrderBy,
    OrderByKind, Query, Select, SelectItem, SetExpr, Statement, TableAliasColumnDef, TableFactor,
    VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

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
pub fn rewrite(sql: &str) -> Cow<'_, str> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("current_setting")
        && !REGPROC_COLUMNS.iter().any(|c| lower.contains(c))
        && !SCALAR_IN_FROM.iter().any(|c| lower.contains(c))
        && !lower.contains("generate_series")
        && !lower.contains("user")
        && lower.matches("select").count() < 2
    {
        return Cow::Borrowed(sql);
    }
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        // The error is for the parser that runs next to report.
        return Cow::Borrowed(sql);
    };
    let mut rewriter = Rewriter {
        changed: false,
        joins: 0,
    };
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
    /// Joins added for `IN (subquery)` so far, to name each one apart.
    joins: usize,
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

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(added) = in_subqueries_to_joins(query, self.joins) {
            self.joins += added;
            self.changed = true;
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

/// Collects the `x IN (SELECT …)` of one query level (not of its subqueries), replacing
/// each with the test over the join that [`in_subqueries_to_joins`] adds.
struct InSubqueries {
    /// Nesting depth in subqueries below the expression being walked.
    depth: usize,
    /// The name of the first join to add.
    first: usize,
    /// `(x, subquery)` of each join, by the text of both (a repeated test shares its join).
    found: Vec<(String, Expr, Query)>,
}

impl VisitorMut for InSubqueries {
    type Break = ();

    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::InSubquery {
            expr: x,
            subquery,
            negated: false,
        } = expr
        else {
            return ControlFlow::Continue(());
        };
        if self.depth > 0 || single_value(subquery).is_none() {
            return ControlFlow::Continue(());
        }
        let key = format!("{x} IN ({subquery})");
        let index = match self.found.iter().position(|(k, ..)| *k == key) {
            Some(i) => i,
            None => {
                self.found.push((key, (**x).clone(), (**subquery).clone()));
                self.found.len() - 1
            }
        };
        let name = join_name(self.first + index);
        if let Some(test) = expression(&format!(
            "CASE WHEN {name}.value IS NOT NULL THEN true WHEN ({x}) IS NULL THEN NULL \
             ELSE false END"
        )) {
            *expr = test;
        }
        ControlFlow::Continue(())
    }
}

fn join_name(i: usize) -> String {
    format!("__armorlake_in_{i}")
}

/// The select of a subquery with a single select-list expression, the only shape that
/// can become a join.
fn single_value(subquery: &mut Query) -> Option<&mut Select> {
    match subquery.body.as_mut() {
        SetExpr::Select(select)
            if select.projection.len() == 1
                && matches!(
                    select.projection[0],
                    SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
                ) =>
        {
            Some(select)
        }
        _ => None,
    }
}

/// Turns the `x IN (SELECT …)` in `query`'s select list and ORDER BY into LEFT JOINs
/// named from `first` on; the number added, or `None` when there were none. Queries it
/// would change the meaning of are left alone: `*` (the joins' columns would show),
/// GROUP BY (they are not grouped).
fn in_subqueries_to_joins(query: &mut Query, first: usize) -> Option<usize> {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let grouped = match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped
        || select.from.is_empty()
        || select.projection.iter().any(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        })
    {
        return None;
    }
    let mut found = InSubqueries {
        depth: 0,
        first,
        found: Vec::new(),
    };
    for item in &mut select.projection {
        let _ = item.visit(&mut found);
    }
    if let Some(OrderBy {
        kind: OrderByKind::Expressions(exprs),
        ..
    }) = &mut query.order_by
    {
        for order in exprs {
            let _ = order.expr.visit(&mut found);
        }
    }
    if found.found.is_empty() {
        return None;
    }
    let added = found.found.len();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let from = select.from.last_mut()?;
    for (i, (_, x, mut subquery)) in found.found.into_iter().enumerate() {
        let values = single_value(&mut subquery)?;
        values.distinct = Some(Distinct::Distinct);
        let value = match values.projection.pop()? {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return None,
        };
        values.projection = vec![SelectItem::ExprWithAlias {
            expr: value,
            alias: Ident::new("value"),
        }];
        let name = join_name(first + i);
        let sql =
            format!("SELECT 1 FROM t LEFT JOIN ({subquery}) AS {name} ON ({x}) = {name}.value");
        let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
        let Statement::Query(q) = parsed.pop()? else {
            return None;
        };
        let SetExpr::Select(s) = *q.body else {
            return None;
        };
        let join = s.from.into_iter().next()?.joins.into_iter().next()?;
        from.joins.push(join);
    }
    Some(added)
}

/// `user` without parentheses: an identifier, or (as sqlparser reads the keyword) a
/// function call without arguments.
fn is_bare_user(e: &Expr) -> bool {
    match e {
        Expr::Identifier(i) => i.quote_style.is_none() && i.value.eq_ignore_ascii_case("user"),
        Expr::Function(f) => {
            matches!(f.args, sqlparser::ast::FunctionArguments::None)
                && matches!(f.name.0.as_slice(), [ObjectNamePart::Identifier(i)]
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
        SelectItem::UnnamedExpr(e) => Some(e),
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
    fn in_subqueries_outside_filters_become_joins() {
        let sql = "SELECT CASE WHEN s IN (SELECT n FROM t2) THEN 0 ELSE 1 END AS o FROM t1 \
                   ORDER BY s IN (SELECT n FROM t2), s NOT IN (SELECT m FROM t3)";
        let test = "CASE WHEN __armorlake_in_0.value IS NOT NULL THEN true \
                    WHEN (s) IS NULL THEN NULL ELSE false END";
        assert_eq!(
            rewrite(sql),
            format!(
                "SELECT CASE WHEN {test} THEN 0 ELSE 1 END AS o FROM t1 \
                 LEFT JOIN (SELECT DISTINCT n AS value FROM t2) AS __armorlake_in_0 \
                 ON (s) = __armorlake_in_0.value \
                 ORDER BY {test}, s NOT IN (SELECT m FROM t3)"
            )
        );
        for sql in [
            "SELECT a FROM t1 WHERE s IN (SELECT n FROM t2)",
            "SELECT *, s IN (SELECT n FROM t2) FROM t1",
            "SELECT s IN (SELECT n FROM t2), count(*) FROM t1 GROUP BY 1",
        ] {
            assert!(matches!(rewrite(sql), Cow::Borrowed(_)), "{sql}");
        }
    }

    #[test]
    fn bare_user_is_current_user() {
        assert_eq!(rewrite("SELECT user"), "SELECT current_user");
    }

    /// What real clients send (tests/sql/), and small statements each rewrite applies to.
    fn seeds() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sql");
        let mut seeds: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        seeds.extend(
            [
                "SELECT user",
                "SELECT current_setting('search_path')",
                "SELECT s[1] FROM string_to_array('a,b', ',') s",
                "SELECT i FROM generate_series(1, 3) AS i",
                "SELECT 1 FROM pg_type t JOIN pg_proc p ON p.oid = t.typreceive",
                "SELECT a IN (SELECT b FROM t) FROM u ORDER BY a IN (SELECT b FROM t)",
            ]
            .map(String::from),
        );
        seeds
    }

    /// A small deterministic fuzzer (the coverage-guided one is fuzz/, on nightly): the
    /// seeds with bytes and whole tokens changed, dropped and repeated. The rewrite must
    /// not panic, and whatever it rewrites must still parse.
    #[test]
    fn mutated_client_sql_never_breaks_the_rewrite() {
        const PIECES: &[&str] = &[
            " IN (SELECT 1)",
            "user",
            "(",
            ")",
            ",",
            "'",
            "\"",
            " s[i] ",
            "generate_series(1,2) AS g",
            "ORDER BY ",
            ";",
            " -- ",
            "/*",
            "*",
            " GROUP BY 1",
            "string_to_array('a', ',') x",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
        };
        let seeds = seeds();
        let mut rewritten = 0;
        for _ in 0..3000 {
            let mut sql = seeds[next(seeds.len())].clone().into_bytes();
            for _ in 0..=next(4) {
                let at = next(sql.len() + 1);
                match next(4) {
                    0 => {
                        let end = (at + next(16)).min(sql.len());
                        sql.drain(at..end);
                    }
                    1 => {
                        let piece = PIECES[next(PIECES.len())].as_bytes();
                        sql.splice(at..at, piece.iter().copied());
                    }
                    2 if at < sql.len() => sql[at] = b" ()',;*[]0aZ"[next(12)],
                    _ => {
                        let end = (at + next(32)).min(sql.len());
                        let copy = sql[at..end].to_vec();
                        sql.splice(at..at, copy);
                    }
                }
            }
            let Ok(sql) = String::from_utf8(sql) else {
                continue;
            };
            if let Cow::Owned(out) = rewrite(&sql) {
                rewritten += 1;
                assert!(
                    Parser::parse_sql(&PostgreSqlDialect {}, &out).is_ok(),
                    "{sql}\nwas rewritten to SQL that does not parse:\n{out}"
                );
            }
        }
        assert!(rewritten > 100, "only {rewritten} mutations were rewritten");
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
