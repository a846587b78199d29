//! How the admin subcommands print: tables and `key: value` lines for people by default, JSON
//! with `--json` for scripts.
//!
//! Both forms show times in RFC 3339 (UTC, milliseconds): the API answers Unix milliseconds in
//! the fields named in [`TIME_FIELDS`], and they are converted here. Every list is printed as
//! one JSON shape, `{"items": [...]}` (plus `next_after` where the list is paged), whatever the
//! API endpoint returns.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Fields that hold Unix milliseconds in the API's answers.
pub const TIME_FIELDS: &[&str] = &["created_at", "updated_at", "last_seen", "at"];

/// A Unix-milliseconds value as RFC 3339, or `None` when it is not one.
pub fn rfc3339(ms: &Value) -> Option<String> {
    let ms = u64::try_from(ms.as_i64()?).ok()?;
    let t = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
    Some(humantime::format_rfc3339_millis(t).to_string())
}

/// Replace every time field (at any depth) by its RFC 3339 form.
pub fn convert_times(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if TIME_FIELDS.contains(&k.as_str())
                    && let Some(s) = rfc3339(v)
                {
                    *v = Value::String(s);
                } else {
                    convert_times(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(convert_times),
        _ => {}
    }
}

/// The one JSON shape of a list.
pub fn list_json(items: Vec<Value>, next_after: Option<&Value>) -> Value {
    let mut out = json!({ "items": items });
    if let Some(n) = next_after.filter(|n| !n.is_null()) {
        out["next_after"] = n.clone();
    }
    out
}

/// Print `value` as pretty JSON with its times converted.
pub fn print_json(mut value: Value) -> anyhow::Result<()> {
    convert_times(&mut value);
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// A cell of a table or a `key: value` line: strings bare, null as `-`, times converted.
pub fn cell(v: &Value, field: &str) -> String {
    if TIME_FIELDS.contains(&field)
        && let Some(s) = rfc3339(v)
    {
        return s;
    }
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(|x| cell(x, "")).collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(",")
            }
        }
        other => other.to_string(),
    }
}

/// Columns of a table: a header and the field it shows.
pub type Columns<'a> = &'a [(&'a str, &'a str)];

/// A table of `rows` (JSON objects), columns padded to their widest cell.
pub fn table(columns: Columns<'_>, rows: &[Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|(_, f)| cell(&r[*f], f)).collect())
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |values: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, (v, &w)) in values.iter().zip(&widths).enumerate() {
            if i + 1 == values.len() {
                s.push_str(v);
            } else {
                // Pad by characters, not bytes (names may be UTF-8).
                s.push_str(v);
                s.push_str(&" ".repeat(w.saturating_sub(v.chars().count()) + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(columns.iter().map(|(h, _)| *h).collect());
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// `key: value` lines for the given fields of an object, keys padded.
pub fn fields(object: &Value, names: Columns<'_>) -> String {
    let width = names
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, field) in names {
        out.push_str(&format!(
            "{:<width$}  {}\n",
            format!("{label}:"),
            cell(&object[*field], field),
            width = width + 1
        ));
    }
    out
}

/// A JSON object as a `key value` table (configuration data).
pub fn map_table(map: &Map<String, Value>, key: &str, value: &str) -> String {
    let rows: Vec<Value> = map.iter().map(|(k, v)| json!({"k": k, "v": v})).collect();
    table(&[(key, "k"), (value, "v")], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_become_rfc3339_at_any_depth() {
        let mut v = json!({
            "created_at": 1_700_000_000_123i64,
            "last_seen": null,
            "events": [{"at": 0, "status": "pending"}],
            "sequence": 5,
        });
        convert_times(&mut v);
        assert_eq!(v["created_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["last_seen"], Value::Null);
        assert_eq!(v["events"][0]["at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["sequence"], 5, "other numbers stay numbers");
    }

    #[test]
    fn tables_align_columns_and_show_absent_values_as_dashes() {
        let rows = [
            json!({"id": "dev-1", "tags": ["eu", "lab"], "v": null}),
            json!({"id": "a-much-longer-id", "tags": [], "v": "1.2.0"}),
        ];
        let t = table(&[("ID", "id"), ("TAGS", "tags"), ("VERSION", "v")], &rows);
        assert_eq!(
            t,
            "ID                TAGS    VERSION\n\
             dev-1             eu,lab  -\n\
             a-much-longer-id  -       1.2.0\n"
        );
        assert_eq!(
            list_json(vec![json!(1)], Some(&json!(7))),
            json!({"items": [1], "next_after": 7})
        );
        assert_eq!(list_json(vec![], Some(&Value::Null)), json!({"items": []}));
    }
}
