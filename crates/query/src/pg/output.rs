//! Results as PostgreSQL would send them, where DataFusion's differ:
//!
//! - Column names: PostgreSQL names an unnamed select-list expression after its function
//!   (`count(*)` → `count`, `now()` → `now`), the type of a cast (`'1'::int` → `int4`) or
//!   `?column?` (`SELECT 1`); DataFusion names it after the whole expression (`Int64(1)`).
//!   Clients that read columns by name (Grafana's `time`, JDBC's `getLong("count")`) need
//!   PostgreSQL's.
//! - Timestamps in text: PostgreSQL prints fractional seconds only when they are not zero,
//!   without trailing zeros (`03:00:01.5+00`); pgwire always prints six digits.

use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use datafusion::sql::sqlparser::ast::{
    CastKind, DataType as SqlType, Expr, ObjectNamePart, Query, Select, SelectItem, SetExpr,
    Statement, TimezoneInfo,
};
use datafusion_postgres::pgwire::api::Type;
use datafusion_postgres::pgwire::api::results::{FieldFormat, FieldInfo};
use datafusion_postgres::pgwire::messages::data::DataRow;

/// PostgreSQL's names for the columns of a result, one per select-list item: `None`
/// where the item keeps the name DataFusion gives it (a column, an alias).
#[derive(Debug, PartialEq)]
pub(crate) struct ColumnNames {
    items: Vec<Option<String>>,
    /// The item that is a `*` (or `t.*`), if one is: its columns keep their names.
    star: Option<usize>,
}

/// PostgreSQL's names for the columns of `statement`'s result; `None` when the items cannot
/// be matched to columns (more than one `*`, not a query).
pub(crate) fn column_names(statement: &Statement) -> Option<ColumnNames> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let select = leftmost_select(query)?;
    let mut star = None;
    let mut items = Vec::with_capacity(select.projection.len());
    for (i, item) in select.projection.iter().enumerate() {
        items.push(match item {
            SelectItem::UnnamedExpr(e) => unnamed(e),
            SelectItem::ExprWithAlias { .. } | SelectItem::ExprWithAliases { .. } => None,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                if star.replace(i).is_some() {
                    return None;
                }
                None
            }
        });
    }
    Some(ColumnNames { items, star })
}

/// The select whose items name the columns: PostgreSQL takes a set operation's names from
/// its leftmost member.
fn leftmost_select(query: &Query) -> Option<&Select> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(select) => return Some(select),
            SetExpr::Query(q) => body = q.body.as_ref(),
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            _ => return None,
        }
    }
}

/// The name PostgreSQL gives an unnamed item, where it differs from DataFusion's.
fn unnamed(e: &Expr) -> Option<String> {
    match e {
        // Columns keep their names in both.
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
        other => Some(figure(other).unwrap_or_else(|| "?column?".to_string())),
    }
}

/// PostgreSQL's FigureColname: the name an expression gives its column, if any.
fn figure(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident),
        Expr::Nested(inner) => figure(inner),
        Expr::Function(f) => f.name.0.last().map(|part| match part {
            ObjectNamePart::Identifier(i) => ident(i),
            other => other.to_string().to_lowercase(),
        }),
        Expr::Cast {
            expr,
            data_type,
            kind,
            ..
        } => figure(expr).or_else(|| match kind {
            CastKind::Cast | CastKind::DoubleColon | CastKind::TryCast | CastKind::SafeCast => {
                type_name(data_type)
            }
        }),
        Expr::TypedString(t) => type_name(&t.data_type),
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Subquery(q) => leftmost_select(q)
            .and_then(|s| s.projection.first())
            .and_then(|item| match item {
                SelectItem::UnnamedExpr(e) => figure(e),
                SelectItem::ExprWithAlias { alias, .. } => Some(ident(alias)),
                _ => None,
            }),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::Ceil { .. } => Some("ceil".into()),
        Expr::Floor { .. } => Some("floor".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Trim { .. } => Some("btrim".into()),
        Expr::Overlay { .. } => Some("overlay".into()),
        Expr::Interval(_) => Some("interval".into()),
        _ => None,
    }
}

/// An identifier as PostgreSQL folds it: unquoted ones in lower case.
fn ident(i: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The name of a cast's type, as PostgreSQL names the column (`int4`, `timestamptz`).
fn type_name(t: &SqlType) -> Option<String> {
    let name = match t {
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => "int4",
        SqlType::BigInt(_) | SqlType::Int8(_) => "int8",
        SqlType::SmallInt(_) | SqlType::Int2(_) => "int2",
        SqlType::Text => "text",
        SqlType::Varchar(_) | SqlType::CharacterVarying(_) => "varchar",
        SqlType::Char(_) | SqlType::Character(_) => "bpchar",
        SqlType::Boolean | SqlType::Bool => "bool",
        SqlType::Real | SqlType::Float4 => "float4",
        SqlType::DoublePrecision | SqlType::Float8 | SqlType::Double(_) => "float8",
        SqlType::Numeric(_) | SqlType::Decimal(_) => "numeric",
        SqlType::Date => "date",
        SqlType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz",
        SqlType::Timestamp(_, _) => "timestamp",
        SqlType::Interval { .. } => "interval",
        SqlType::JSON => "json",
        SqlType::JSONB => "jsonb",
        SqlType::Custom(name, _) => return name.0.last().map(|p| p.to_string().to_lowercase()),
        _ => return None,
    };
    Some(name.to_string())
}

/// Whether every name in `fields` is a plain lower-case identifier: DataFusion names an
/// unnamed expression after its text (`count(*)`, `Int64(1)`), so these name a column or
/// an alias, as PostgreSQL does, and there is nothing to rename.
pub(crate) fn plainly_named(fields: &[FieldInfo]) -> bool {
    fields.iter().all(|f| {
        let mut bytes = f.name().bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// `fields` with the names of `names` where one is given (and the counts agree).
pub(crate) fn rename(fields: &[FieldInfo], names: &ColumnNames) -> Option<Vec<FieldInfo>> {
    if names.items.iter().all(Option::is_none) {
        return None;
    }
    let names: Vec<&Option<String>> = match names.star {
        None if fields.len() == names.items.len() => names.items.iter().collect(),
        // The `*` stands for the columns the other items do not account for.
        Some(star) if fields.len() + 1 >= names.items.len() => {
            let spread = fields.len() + 1 - names.items.len();
            let kept = &None;
            names.items[..star]
                .iter()
                .chain(std::iter::repeat_n(kept, spread))
                .chain(&names.items[star + 1..])
                .collect()
        }
        _ => return None,
    };
    Some(
        fields
            .iter()
            .zip(names)
            .map(|(f, name)| match name {
                Some(name) if name != f.name() => FieldInfo::new(
                    name.clone(),
                    f.table_id(),
                    f.column_id(),
                    f.datatype().clone(),
                    f.format(),
                )
                .with_format_options(f.format_options().clone())
                .with_type_size(f.type_size())
                .with_type_modifier(f.type_modifier()),
                _ => f.clone(),
            })
            .collect(),
    )
}

/// Renames `fields` after `statement`'s select list, if it names any differently.
pub(crate) fn renamed(statement: &Statement, fields: &Arc<Vec<FieldInfo>>) -> Arc<Vec<FieldInfo>> {
    column_names(statement)
        .and_then(|names| rename(fields, &names))
        .map_or_else(|| fields.clone(), Arc::new)
}

/// The columns whose text needs PostgreSQL's timestamp form.
pub(crate) fn timestamp_columns(fields: &[FieldInfo]) -> Vec<usize> {
    fields
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.format() == FieldFormat::Text
                && matches!(
                    *f.datatype(),
                    Type::TIMESTAMPTZ | Type::TIMESTAMP | Type::TIME | Type::TIMETZ
                )
        })
        .map(|(i, _)| i)
        .collect()
}

/// A timestamp's text with its fractional seconds as PostgreSQL prints them: trailing
/// zeros dropped, and the point with them when nothing is left (`…:01.500000+00` →
/// `…:01.5+00`, `…:01.000000+00` → `…:01+00`).
pub(crate) fn trim_fraction(text: &[u8]) -> Option<Vec<u8>> {
    // The seconds' point: after `:SS`, followed by digits.
    let point = (3..text.len()).find(|&i| {
        text[i] == b'.'
            && text[i - 3] == b':'
            && text[i - 2].is_ascii_digit()
            && text[i - 1].is_ascii_digit()
    })?;
    let digits_end = text[point + 1..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(text.len(), |n| point + 1 + n);
    let mut keep = digits_end;
    while keep > point + 1 && text[keep - 1] == b'0' {
        keep -= 1;
    }
    if keep == digits_end {
        return None;
    }
    if keep == point + 1 {
        keep = point;
    }
    let mut out = Vec::with_capacity(text.len());
    out.extend_from_slice(&text[..keep]);
    out.extend_from_slice(&text[digits_end..]);
    Some(out)
}

/// `row` with the timestamps in `columns` in PostgreSQL's text form.
pub(crate) fn fix_row(row: DataRow, columns: &[usize]) -> DataRow {
    if columns.is_empty() {
        return row;
    }
    // Most timestamps need no change: look first, copy only a row that does.
    let mut input = &row.data[..];
    let mut out: Option<BytesMut> = None;
    for index in 0..row.field_count.max(0) as usize {
        let field_start = row.data.len() - input.len();
        if input.remaining() < 4 {
            return row;
        }
        let len = input.get_i32();
        let value_len = usize::try_from(len).unwrap_or(0);
        if input.remaining() < value_len {
            return row;
        }
        let value = &input[..value_len];
        let trimmed = (len >= 0 && columns.contains(&index))
            .then(|| trim_fraction(value))
            .flatten();
        match (&mut out, trimmed) {
            (out @ None, Some(trimmed)) => {
                let mut fixed = BytesMut::with_capacity(row.data.len());
                fixed.put_slice(&row.data[..field_start]);
                fixed.put_i32(trimmed.len() as i32);
                fixed.put_slice(&trimmed);
                *out = Some(fixed);
            }
            (Some(out), Some(trimmed)) => {
                out.put_i32(trimmed.len() as i32);
                out.put_slice(&trimmed);
            }
            (Some(out), None) => {
                out.put_i32(len);
                out.put_slice(value);
            }
            (None, None) => {}
        }
        input.advance(value_len);
    }
    match out {
        Some(out) => DataRow::new(out, row.field_count),
        None => row,
    }
}

/// A DataRow of `values` in text (`None`: NULL), for tests.
#[cfg(test)]
pub(crate) fn data_row(values: &[Option<&str>]) -> DataRow {
    let mut data = BytesMut::new();
    for v in values {
        match v {
            Some(v) => {
                data.put_i32(v.len() as i32);
                data.put_slice(v.as_bytes());
            }
            None => data.put_i32(-1),
        }
    }
    DataRow::new(data, values.len() as i16)
}

/// The fields of `row` as text (`None`: NULL), for tests.
#[cfg(test)]
pub(crate) fn texts(row: &DataRow) -> Vec<Option<String>> {
    let mut data = &row.data[..];
    (0..row.field_count)
        .map(|_| {
            let len = data.get_i32();
            (len >= 0).then(|| {
                let value = String::from_utf8(data[..len as usize].to_vec()).unwrap_or_default();
                data.advance(len as usize);
                value
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn names(sql: &str) -> Option<Vec<Option<String>>> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        column_names(&statement).map(|names| names.items)
    }

    fn some(v: &[Option<&str>]) -> Option<Vec<Option<String>>> {
        Some(v.iter().map(|s| s.map(str::to_string)).collect())
    }

    #[test]
    fn unnamed_columns_are_named_as_postgres_names_them() {
        assert_eq!(names("SELECT 1"), some(&[Some("?column?")]));
        assert_eq!(
            names("SELECT count(*), now(), current_timestamp, pod_name, 1 AS one FROM alerts"),
            some(&[
                Some("count"),
                Some("now"),
                Some("current_timestamp"),
                None,
                None
            ])
        );
        assert_eq!(
            names("SELECT '1'::int, pid::text, CAST(x AS timestamptz), a + 1 FROM t"),
            some(&[Some("int4"), Some("pid"), Some("x"), Some("?column?")])
        );
        assert_eq!(
            names("SELECT CASE WHEN true THEN 1 END, EXISTS (SELECT 1), (SELECT max(pid) FROM t)"),
            some(&[Some("case"), Some("exists"), Some("max")])
        );
        assert_eq!(names("SELECT 1 UNION SELECT 2"), some(&[Some("?column?")]));
        assert_eq!(names("SELECT * FROM t"), some(&[None]));
        assert_eq!(names("SELECT t.*, u.* FROM t, u"), None);
        assert_eq!(names("SHOW search_path"), None);
    }

    #[test]
    fn only_expression_names_send_the_statement_to_be_parsed_again() {
        let fields = |names: &[&str]| -> Vec<FieldInfo> {
            names
                .iter()
                .map(|n| FieldInfo::new(n.to_string(), None, None, Type::TEXT, FieldFormat::Text))
                .collect()
        };
        assert!(plainly_named(&fields(&["namespace_name", "n", "_x2"])));
        assert!(plainly_named(&fields(&[])));
        for expression in ["count(*)", "Int64(1)", "Upper", "2x", "", "?column?", "a b"] {
            assert!(!plainly_named(&fields(&["n", expression])), "{expression}");
        }
    }

    #[test]
    fn a_star_keeps_the_names_of_the_columns_it_stands_for() {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 1, *, 2 AS two FROM t")
            .unwrap()
            .remove(0);
        let names = column_names(&statement).unwrap();
        let field =
            |name: &str| FieldInfo::new(name.into(), None, None, Type::INT8, FieldFormat::Text);
        let fields: Vec<_> = ["Int64(1)", "a", "b", "two"].map(field).into();
        let renamed: Vec<_> = rename(&fields, &names)
            .unwrap()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(renamed, ["?column?", "a", "b", "two"]);
        // A table without columns: the star stands for none.
        let fields: Vec<_> = ["Int64(1)", "two"].map(field).into();
        assert_eq!(rename(&fields, &names).unwrap()[0].name(), "?column?");
        // Fewer columns than the other items: no match.
        assert!(rename(&fields[..1], &names).is_none());
    }

    #[test]
    fn fractional_seconds_print_as_postgres_prints_them() {
        let trim = |s: &str| trim_fraction(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            trim("2026-11-23 03:00:01.500000+00").as_deref(),
            Some("2026-11-23 03:00:01.5+00")
        );
        assert_eq!(
            trim("2026-11-23 03:00:01.000000+00").as_deref(),
            Some("2026-11-23 03:00:01+00")
        );
        assert_eq!(trim("2026-11-23 03:00:01.123456+00"), None);
        assert_eq!(
            trim("Mon Nov 23 03:00:01.250000 2026 UTC").as_deref(),
            Some("Mon Nov 23 03:00:01.25 2026 UTC")
        );
        assert_eq!(
            trim("23.11.2026 03:00:01.000000").as_deref(),
            Some("23.11.2026 03:00:01")
        );
        assert_eq!(trim("no time"), None);
    }

    #[test]
    fn rows_are_rewritten_field_by_field() {
        let row = fix_row(
            data_row(&[Some("2026-11-23 03:00:01.500000+00"), None, Some("x.000")]),
            &[0, 2],
        );
        let mut expected = BytesMut::new();
        expected.put_i32(24);
        expected.put_slice(b"2026-11-23 03:00:01.5+00");
        expected.put_i32(-1);
        expected.put_i32(5);
        expected.put_slice(b"x.000");
        assert_eq!(row.data, expected);

        // A change after untouched fields keeps them; a row with none stays as it was.
        let encode = data_row;
        let later = [None, Some("a"), Some("2026-11-23 03:00:01.250000+00")];
        assert_eq!(
            fix_row(encode(&later), &[2]).data,
            encode(&[None, Some("a"), Some("2026-11-23 03:00:01.25+00")]).data
        );
        let exact = [Some("2026-11-23 03:00:01.123456+00"), Some("b")];
        assert_eq!(fix_row(encode(&exact), &[0]).data, encode(&exact).data);
    }
}
