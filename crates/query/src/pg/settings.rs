//! Per-session settings: `SET`, `SHOW`, `RESET` and `current_setting()`, as PostgreSQL has
//! them, each connection with its own values.
//!
//! Every connection plans in a DataFusion session of its own (see `mod.rs`), so settings
//! live in that session's config: DataFusion's and armorlake's options (`armorlake.*`,
//! `datafusion.*`) as they are, PostgreSQL's settings in the [`PgSettings`] extension, where
//! `current_setting()` reads them. The settings pgwire formats values with (`DateStyle`,
//! `extra_float_digits`, …) and `statement_timeout` are mirrored into the connection's
//! metadata, where pgwire and `session.rs` read them.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{DFSchema, ParamValues};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, EmptyRelation, LogicalPlan, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, Reset, Set, Statement, Value};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::Type;
use datafusion_postgres::pgwire::api::auth::DefaultServerParameterProvider;
use datafusion_postgres::pgwire::api::results::{
    DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::startup::ParameterStatus;

use super::error;
use super::session::{STATEMENT_TIMEOUT_MS, parse_duration_ms, parse_options};

/// The PostgreSQL version armorlake presents itself as (`server_version`).
pub(crate) const SERVER_VERSION: &str = "16.6";
/// `server_version_num` for [`SERVER_VERSION`].
const SERVER_VERSION_NUM: &str = "160006";
/// The date style of a new session, PostgreSQL's default.
const DEFAULT_DATE_STYLE: &str = "ISO, MDY";

/// PostgreSQL's settings with their names as `SHOW` prints them and the values a new
/// session starts with. Any other name can be `SET` too (clients set many armorlake
/// ignores) and is then shown as it was set.
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("DateStyle", DEFAULT_DATE_STYLE),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("IntervalStyle", "postgres"),
    ("is_superuser", "on"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("max_identifier_length", "63"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("server_version_num", SERVER_VERSION_NUM),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("TimeZone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// Settings PostgreSQL reports to the client (ParameterStatus) whenever they change.
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
];

/// Settings a client may not change.
const READ_ONLY: &[&str] = &[
    "integer_datetimes",
    "is_superuser",
    "lc_collate",
    "lc_ctype",
    "max_identifier_length",
    "server_encoding",
    "server_version",
    "server_version_num",
];

/// The parameters a session starts with (ParameterStatus after authentication), agreeing
/// with [`DEFAULTS`].
pub(crate) fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = SERVER_VERSION.to_string();
    parameters.date_style = DEFAULT_DATE_STYLE.to_string();
    parameters.time_zone = "UTC".to_string();
    parameters.search_path = "\"$user\", public".to_string();
    parameters
}

/// The canonical name of a setting: `datestyle` → `DateStyle`; names armorlake does not
/// know are lowercased, as PostgreSQL does.
fn canonical(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    let lower = match lower.as_str() {
        "time zone" | "time_zone" => "timezone".to_string(),
        "transaction isolation level" => "transaction_isolation".to_string(),
        "names" => "client_encoding".to_string(),
        _ => lower,
    };
    DEFAULTS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&lower))
        .map_or(lower, |(n, _)| (*n).to_string())
}

fn default_of(name: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The PostgreSQL settings of a session, by canonical name: what it `SET`, and what it gave
/// at startup (what `RESET` goes back to, as in PostgreSQL). Lives in the session's
/// DataFusion config, so `current_setting()` sees the values of its own session.
#[derive(Debug, Clone, Default)]
pub struct PgSettings {
    values: BTreeMap<String, String>,
    startup: BTreeMap<String, String>,
}

impl ConfigExtension for PgSettings {
    const PREFIX: &'static str = "pg_session";
}

impl ExtensionOptions for PgSettings {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> DfResult<()> {
        self.values.insert(canonical(key), value.to_string());
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        self.values
            .iter()
            .map(|(k, v)| ConfigEntry {
                key: format!("{}.{k}", Self::PREFIX),
                value: Some(v.clone()),
                description: "a PostgreSQL setting of this session",
            })
            .collect()
    }
}

/// The value of setting `name` in a session whose config is `options`: what it set, else
/// the default; DataFusion's and armorlake's options by their dotted names.
fn lookup(options: &datafusion::config::ConfigOptions, name: &str) -> Option<String> {
    let name = canonical(name);
    if let Some(v) = options
        .extensions
        .get::<PgSettings>()
        .and_then(|s| s.values.get(&name).or_else(|| s.startup.get(&name)))
    {
        return Some(v.clone());
    }
    if let Some(v) = default_of(&name) {
        return Some(v.to_string());
    }
    if name.contains('.') {
        return options
            .entries()
            .into_iter()
            .find(|e| e.key == name)
            .map(|e| e.value.unwrap_or_default());
    }
    None
}

/// Changes the options of the session of `ctx`, then lets the functions that depend on
/// them (`now()` on `TimeZone`) see the change, as DataFusion's own `SET` does.
fn with_options<R>(
    ctx: &SessionContext,
    change: impl FnOnce(&mut datafusion::config::ConfigOptions) -> R,
) -> R {
    let state = ctx.state_ref();
    let mut state = state.write();
    let result = change(state.config_mut().options_mut());
    let options = state.config().options().clone();
    let updated: Vec<_> = state
        .scalar_functions()
        .values()
        .filter_map(|udf| udf.inner().with_updated_config(&options))
        .collect();
    for udf in updated {
        if let Err(e) = state.register_udf(Arc::new(udf)) {
            tracing::debug!(error = %e, "re-registering a function after SET failed");
        }
    }
    result
}

/// Registers `current_setting` on `ctx`.
pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(
        CurrentSetting::new(),
    ));
}

/// Adds the (empty) [`PgSettings`] to a new session's config.
pub(crate) fn install(ctx: &SessionContext) {
    with_options(ctx, |options| {
        if options.extensions.get::<PgSettings>().is_none() {
            options.extensions.insert(PgSettings::default());
        }
        // `now()` and friends are timestamptz, in the session's TimeZone.
        if options.execution.time_zone.is_none() {
            options.execution.time_zone = Some("UTC".into());
        }
    });
}

/// `current_setting(name [, missing_ok])`: the session's value of a setting, an error for
/// an unknown one (NULL with `missing_ok`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> Self {
        CurrentSetting {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                // Folded while planning, with the planning session's config.
                Volatility::Stable,
            ),
        }
    }
}

/// PostgreSQL's error for a setting it does not know.
fn unrecognized(name: &str) -> String {
    format!("unrecognized configuration parameter \"{name}\"")
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let names = arrays
            .first()
            .ok_or_else(|| DataFusionError::Plan("current_setting needs a name".into()))?
            .as_string::<i32>();
        let missing_ok = arrays.get(1).map(|a| a.as_boolean());
        let mut out = StringBuilder::new();
        for row in 0..names.len() {
            if names.is_null(row) {
                out.append_null();
                continue;
            }
            let name = names.value(row);
            match lookup(&args.config_options, name) {
                Some(v) => out.append_value(v),
                None if missing_ok.is_some_and(|m| !m.is_null(row) && m.value(row)) => {
                    out.append_null()
                }
                None => return Err(DataFusionError::Execution(unrecognized(name))),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

/// The text of a `SET` value as PostgreSQL takes it: strings without quotes, several
/// values joined by `, ` (`SET search_path = a, b`); `None` for `DEFAULT`.
fn value_text(values: &[Expr]) -> Option<String> {
    let mut parts = Vec::with_capacity(values.len());
    for v in values {
        let text = match v {
            Expr::Identifier(i)
                if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") =>
            {
                return None;
            }
            Expr::Identifier(i) => i.value.clone(),
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
                other => other.to_string(),
            },
            other => other.to_string(),
        };
        parts.push(text);
    }
    Some(parts.join(", "))
}

/// `DateStyle` as PostgreSQL normalizes it (`iso` → `ISO, MDY`), or `None` if invalid.
fn date_style(value: &str, current: &str) -> Option<String> {
    let (mut style, mut order) = current.split_once(", ").unwrap_or(("ISO", "MDY"));
    for word in value.split([',', ' ']).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "iso" => style = "ISO",
            "sql" => style = "SQL",
            "postgres" => style = "Postgres",
            "german" => style = "German",
            "mdy" | "us" | "noneuro" | "noneuropean" => order = "MDY",
            "dmy" | "euro" | "european" => order = "DMY",
            "ymd" => order = "YMD",
            "default" => (style, order) = ("ISO", "MDY"),
            _ => return None,
        }
    }
    Some(format!("{style}, {order}"))
}

/// `statement_timeout` as `SHOW` prints it: `0`, or the largest whole unit.
fn duration_text(ms: u64) -> String {
    match ms {
        0 => "0".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}min", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// An ERROR (not FATAL, as at startup) for a bad value of a setting.
fn bad_value(name: &str, value: &str) -> PgWireError {
    error::setting_error(
        "22023",
        format!("invalid value for parameter \"{name}\": \"{value}\""),
    )
}

/// Where a setting lives, and the value it takes.
enum Target {
    /// A PostgreSQL setting, with the value to store and show.
    Pg(String),
    /// A DataFusion or armorlake option.
    DataFusion,
}

/// Checks `value` for setting `name` and says where it goes.
fn check(ctx: &SessionContext, name: &str, value: &str) -> PgWireResult<Target> {
    if READ_ONLY.contains(&name) {
        return Err(error::setting_error(
            "55P02",
            format!("parameter \"{name}\" cannot be changed"),
        ));
    }
    let value = match name {
        "statement_timeout" => {
            let ms = parse_duration_ms(value).ok_or_else(|| bad_value(name, value))?;
            duration_text(ms)
        }
        "DateStyle" => {
            let current = setting(ctx, "DateStyle").unwrap_or_default();
            date_style(value, &current).ok_or_else(|| bad_value(name, value))?
        }
        "TimeZone" => {
            value
                .parse::<datafusion::arrow::array::timezone::Tz>()
                .map_err(|_| bad_value(name, value))?;
            value.to_string()
        }
        "client_encoding" => {
            let v = value.to_ascii_uppercase().replace(['-', '_'], "");
            if v != "UTF8" && v != "UNICODE" {
                return Err(error::setting_error(
                    "0A000",
                    format!("armorlake only speaks UTF8, not client_encoding \"{value}\""),
                ));
            }
            "UTF8".to_string()
        }
        _ => value.to_string(),
    };
    let dotted = name.contains('.');
    if dotted
        && ctx
            .state()
            .config()
            .options()
            .entries()
            .iter()
            .any(|e| e.key == name)
    {
        return Ok(Target::DataFusion);
    }
    Ok(Target::Pg(value))
}

/// The current value of `name` in the session of `ctx`.
fn setting(ctx: &SessionContext, name: &str) -> Option<String> {
    lookup(ctx.state().config().options(), name)
}

/// Sets (or with `None`, resets) `name` for the session of `ctx` and the connection.
async fn apply(
    ctx: &SessionContext,
    client: &mut dyn HookClient,
    name: &str,
    value: Option<&str>,
) -> PgWireResult<()> {
    let name = canonical(name);
    let stored = match value {
        Some(value) => match check(ctx, &name, value)? {
            Target::DataFusion => {
                // DataFusion's booleans take `true`/`false` only; `SET x = on` gives `on`.
                with_options(ctx, |options| {
                    options.set(&name, value).or_else(|e| {
                        match crate::cluster::parse_bool(&name, value) {
                            Ok(b) => options.set(&name, &b.to_string()),
                            Err(_) => Err(e),
                        }
                    })
                })
                .map_err(|_| bad_value(&name, value))?;
                return Ok(());
            }
            Target::Pg(v) => Some(v),
        },
        None => {
            if name.contains('.') && default_of(&name).is_none() {
                reset_datafusion_option(ctx, &name)?;
            }
            None
        }
    };
    let effective = with_options(ctx, |options| {
        if let Some(settings) = options.extensions.get_mut::<PgSettings>() {
            match &stored {
                Some(v) => settings.values.insert(name.clone(), v.clone()),
                None => settings.values.remove(&name),
            };
        }
        let effective = lookup(options, &name);
        if name == "TimeZone" {
            options.execution.time_zone = effective.clone().or_else(|| Some("UTC".into()));
        }
        effective
    });
    mirror(client, &name, effective.as_deref());
    if REPORTED.contains(&name.as_str()) {
        let shown = setting(ctx, &name).unwrap_or_default();
        client
            .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name.clone(),
                shown,
            )))
            .await?;
    }
    Ok(())
}

/// Resets a DataFusion or armorlake option to the engine's value.
fn reset_datafusion_option(ctx: &SessionContext, name: &str) -> PgWireResult<()> {
    let fresh = datafusion::prelude::SessionConfig::new()
        .with_option_extension(crate::ArmorlakeOptions::default());
    let default = fresh
        .options()
        .entries()
        .into_iter()
        .find(|e| e.key == name)
        .and_then(|e| e.value);
    if let Some(v) = default {
        with_options(ctx, |options| options.set(name, &v)).map_err(|_| bad_value(name, &v))?;
    }
    Ok(())
}

/// Copies a setting into the connection metadata pgwire and `session.rs` read.
fn mirror(client: &mut dyn HookClient, name: &str, value: Option<&str>) {
    let metadata = client.metadata_mut();
    let key = match name {
        "statement_timeout" => {
            match value.and_then(parse_duration_ms).filter(|ms| *ms > 0) {
                Some(ms) => metadata.insert(STATEMENT_TIMEOUT_MS.into(), ms.to_string()),
                None => metadata.remove(STATEMENT_TIMEOUT_MS),
            };
            return;
        }
        "DateStyle" => "datestyle",
        "IntervalStyle" => "intervalstyle",
        "TimeZone" => "timezone",
        "bytea_output" | "extra_float_digits" | "application_name" => name,
        _ => return,
    };
    match value {
        Some(v) => metadata.insert(key.to_string(), v.to_string()),
        None => metadata.remove(key),
    };
}

/// `RESET ALL` (and `DISCARD ALL`): every setting back to its value at startup, else its
/// default.
pub(crate) async fn reset_all(
    ctx: &SessionContext,
    client: &mut dyn HookClient,
) -> PgWireResult<()> {
    let names: Vec<String> = ctx
        .state()
        .config()
        .options()
        .extensions
        .get::<PgSettings>()
        .map(|s| s.values.keys().cloned().collect())
        .unwrap_or_default();
    for name in names {
        apply(ctx, client, &name, None).await?;
    }
    for option in crate::ArmorlakeOptions::default().entries() {
        reset_datafusion_option(ctx, &option.key)?;
    }
    Ok(())
}

/// Copies the settings a client gave at startup (`application_name`, `DateStyle`,
/// `-c name=value` in `options`, …) into the session, once, before its first statement.
pub(crate) fn from_startup<C: ClientInfo>(ctx: &SessionContext, client: &C) {
    let metadata = client.metadata();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, _) in DEFAULTS {
        if READ_ONLY.contains(name) {
            continue;
        }
        if let Some((_, v)) = metadata.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            pairs.push(((*name).to_string(), v.clone()));
        }
    }
    if let Some(options) = metadata.get("options") {
        pairs.extend(parse_options(options));
    }
    with_options(ctx, |options| startup_settings(options, pairs));
}

/// Puts the startup settings `pairs` into a session's `options`.
fn startup_settings(options: &mut datafusion::config::ConfigOptions, pairs: Vec<(String, String)>) {
    for (name, value) in pairs {
        let name = canonical(&name);
        let value = match name.as_str() {
            "DateStyle" => match date_style(&value, DEFAULT_DATE_STYLE) {
                Some(v) => v,
                None => continue,
            },
            "statement_timeout" => match parse_duration_ms(&value) {
                Some(ms) => duration_text(ms),
                None => continue,
            },
            _ => value,
        };
        if name.contains('.') {
            if options.set(&name, &value).is_err() {
                tracing::debug!(%name, "ignoring an unknown startup option");
            }
            continue;
        }
        if name == "TimeZone" {
            options.execution.time_zone = Some(value.clone());
        }
        if let Some(settings) = options.extensions.get_mut::<PgSettings>() {
            settings.startup.insert(name, value);
        }
    }
}

/// One row, one column named `name`: what `SHOW name` answers.
fn show_response(name: &str, value: &str) -> PgWireResult<Response> {
    let fields = Arc::new(vec![FieldInfo::new(
        name.to_string(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(Response::Query(QueryResponse::new(
        fields,
        Box::pin(futures::stream::once(async move { Ok(row) })),
    )))
}

/// `SHOW ALL`: name, setting and description of every setting the session has.
fn show_all(ctx: &SessionContext) -> PgWireResult<Response> {
    let fields = Arc::new(
        ["name", "setting", "description"]
            .iter()
            .map(|n| FieldInfo::new((*n).to_string(), None, None, Type::TEXT, FieldFormat::Text))
            .collect::<Vec<_>>(),
    );
    let options = ctx.state().config().options().clone();
    let mut names: Vec<String> = DEFAULTS.iter().map(|(n, _)| (*n).to_string()).collect();
    if let Some(s) = options.extensions.get::<PgSettings>() {
        names.extend(s.values.keys().cloned());
        names.extend(s.startup.keys().cloned());
    }
    names.sort_by_key(|n| n.to_lowercase());
    names.dedup();
    let mut rows = Vec::new();
    for name in names {
        let value = lookup(&options, &name).unwrap_or_default();
        let mut encoder = DataRowEncoder::new(fields.clone());
        encoder.encode_field(&Some(name.as_str()))?;
        encoder.encode_field(&Some(value.as_str()))?;
        encoder.encode_field(&Some(""))?;
        rows.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        Box::pin(futures::stream::iter(rows)),
    )))
}

/// The name `SHOW` asks for: its words (`SHOW TIME ZONE`, `SHOW transaction isolation
/// level`), or a dotted name (`SHOW armorlake.allow_partial_results`), which the parser
/// also splits.
fn show_name(variable: &[datafusion::sql::sqlparser::ast::Ident]) -> String {
    let words: Vec<&str> = variable.iter().map(|i| i.value.as_str()).collect();
    let spaced = words.join(" ");
    if words.len() > 1 && default_of(&canonical(&spaced)).is_none() {
        words.join(".")
    } else {
        spaced
    }
}

/// Answers `SHOW …`.
fn show(
    ctx: &SessionContext,
    variable: &[datafusion::sql::sqlparser::ast::Ident],
) -> PgWireResult<Response> {
    let joined = show_name(variable);
    if joined.eq_ignore_ascii_case("all") {
        return show_all(ctx);
    }
    let name = canonical(&joined);
    let display = if name.contains('.') {
        joined.to_lowercase()
    } else {
        name.clone()
    };
    match setting(ctx, &name) {
        Some(v) => show_response(&display, &v),
        None => Err(error::setting_error("42704", unrecognized(&joined))),
    }
}

/// What a statement is, for this hook.
enum Kind<'a> {
    Set(Option<String>),
    Reset(Option<String>),
    Show(&'a [datafusion::sql::sqlparser::ast::Ident]),
    /// Succeeds and changes nothing armorlake has (`SET SESSION CHARACTERISTICS …`).
    Accept,
}

fn classify(statement: &Statement) -> Option<(Kind<'_>, Option<String>)> {
    match statement {
        Statement::Set(set) => match set {
            Set::SingleAssignment {
                variable, values, ..
            } => Some((Kind::Set(value_text(values)), Some(variable.to_string()))),
            Set::SetTimeZone { value, .. } => Some((
                Kind::Set(value_text(std::slice::from_ref(value))),
                Some("TimeZone".into()),
            )),
            Set::SetNames { charset_name, .. } => Some((
                Kind::Set(Some(charset_name.value.clone())),
                Some("client_encoding".into()),
            )),
            Set::SetTransaction { .. } => Some((Kind::Accept, None)),
            _ => None,
        },
        Statement::Reset(r) => match &r.reset {
            Reset::ALL => Some((Kind::Reset(None), None)),
            Reset::ConfigurationParameter(name) => {
                Some((Kind::Reset(Some(name.to_string())), None))
            }
        },
        Statement::ShowVariable { variable } => Some((Kind::Show(variable), None)),
        _ => None,
    }
}

/// Runs a settings statement of this session.
async fn run(
    statement: &Statement,
    ctx: &SessionContext,
    client: &mut dyn HookClient,
) -> Option<PgWireResult<Response>> {
    let (kind, name) = classify(statement)?;
    let result = async {
        match kind {
            Kind::Set(value) => {
                let name = name.unwrap_or_default();
                apply(ctx, client, &name, value.as_deref()).await?;
                Ok(Response::Execution(Tag::new("SET")))
            }
            Kind::Reset(None) => {
                reset_all(ctx, client).await?;
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Kind::Reset(Some(name)) => {
                apply(ctx, client, &name, None).await?;
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Kind::Show(variable) => show(ctx, variable),
            Kind::Accept => Ok(Response::Execution(Tag::new("SET"))),
        }
    };
    Some(result.await)
}

/// The plan Parse gives a settings statement: `SHOW` has one text column, the others none.
fn parse_plan(statement: &Statement) -> Option<PgWireResult<LogicalPlan>> {
    let (kind, _) = classify(statement)?;
    let schema = match kind {
        Kind::Show(variable) => {
            let joined = show_name(variable);
            if joined.eq_ignore_ascii_case("all") {
                Schema::new(
                    ["name", "setting", "description"]
                        .iter()
                        .map(|n| Field::new(*n, DataType::Utf8, false))
                        .collect::<Vec<_>>(),
                )
            } else {
                Schema::new(vec![Field::new(canonical(&joined), DataType::Utf8, false)])
            }
        }
        _ => Schema::empty(),
    };
    Some(
        DFSchema::try_from(schema)
            .map(|schema| {
                LogicalPlan::EmptyRelation(EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(schema),
                })
            })
            .map_err(|e| PgWireError::ApiError(Box::new(e))),
    )
}

/// Answers `SET`, `SHOW` and `RESET` for the session, in both protocols.
#[derive(Debug)]
pub(crate) struct Settings;

#[async_trait]
impl QueryHook for Settings {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        run(statement, ctx, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        parse_plan(statement)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        run(statement, ctx, client).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical() {
        assert_eq!(canonical("datestyle"), "DateStyle");
        assert_eq!(canonical("TIME ZONE"), "TimeZone");
        assert_eq!(
            canonical("transaction isolation level"),
            "transaction_isolation"
        );
        assert_eq!(canonical("Work_Mem"), "work_mem");
        assert_eq!(
            canonical("armorlake.allow_partial_results"),
            "armorlake.allow_partial_results"
        );
    }

    #[test]
    fn date_styles_normalize_as_postgres_does() {
        assert_eq!(date_style("iso", "ISO, MDY").as_deref(), Some("ISO, MDY"));
        assert_eq!(
            date_style("SQL, DMY", "ISO, MDY").as_deref(),
            Some("SQL, DMY")
        );
        assert_eq!(
            date_style("european", "ISO, MDY").as_deref(),
            Some("ISO, DMY")
        );
        assert_eq!(
            date_style("ISO, YMD", "SQL, DMY").as_deref(),
            Some("ISO, YMD")
        );
        assert_eq!(date_style("klingon", "ISO, MDY"), None);
    }

    #[test]
    fn timeouts_show_in_their_largest_unit() {
        assert_eq!(duration_text(0), "0");
        assert_eq!(duration_text(250), "250ms");
        assert_eq!(duration_text(5000), "5s");
        assert_eq!(duration_text(120_000), "2min");
        assert_eq!(duration_text(7_200_000), "2h");
    }

    #[test]
    fn session_values_win_over_defaults() {
        let mut options = datafusion::config::ConfigOptions::new();
        options.extensions.insert(PgSettings::default());
        assert_eq!(
            lookup(&options, "search_path").as_deref(),
            Some("\"$user\", public")
        );
        options
            .extensions
            .get_mut::<PgSettings>()
            .unwrap()
            .values
            .insert("search_path".into(), "armorlake".into());
        assert_eq!(
            lookup(&options, "SEARCH_PATH").as_deref(),
            Some("armorlake")
        );
        assert_eq!(lookup(&options, "no_such_setting"), None);
        assert_eq!(
            lookup(&options, "datafusion.execution.batch_size").as_deref(),
            Some("8192")
        );
    }
}
