//! The status views: a small HTML page at `/` and the same as JSON at `/api/v1/files`.
//!
//! The model is prepared with each publication; ages are computed when a page is asked for.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use promdrop_textfile::conflict::ConflictRecord;
use promdrop_textfile::staleness::FileView;

/// How many conflicts the status views list (all are counted in the metrics).
pub const MAX_LISTED_CONFLICTS: usize = 100;

/// One directory.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DirStatus {
    /// The path as configured.
    pub path: String,
    /// Why it cannot be listed, if it cannot.
    pub error: Option<String>,
}

/// One file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileStatus {
    /// Full path (as the `file` label shows it).
    pub path: String,
    /// `fresh`, `stale` or `expired`.
    pub state: &'static str,
    /// Why it is not served, when it fails.
    pub error: Option<String>,
    /// Series served from it.
    pub series: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// Modification time (Unix seconds).
    pub mtime: f64,
    /// What its age counts from (the writer's `written_at`, else the mtime).
    pub reference_time: f64,
    /// The header's `written_at` is later than the mtime (plus the allowed clock skew): not
    /// trusted, the mtime counts.
    pub written_at_distrusted: bool,
    /// When it turns stale, if ever.
    pub stale_at: Option<f64>,
    /// When it expires, if ever.
    pub expire_at: Option<f64>,
    /// When it is deleted, if ever.
    pub delete_at: Option<f64>,
}

impl FileStatus {
    /// The status of `view`.
    pub fn of(view: &FileView) -> FileStatus {
        let s = &view.snapshot;
        FileStatus {
            path: promdrop_textfile::snapshot::file_label(&s.path),
            state: view.state.as_str(),
            error: s.content.as_ref().err().cloned(),
            series: s.series(),
            bytes: s.identity.size,
            mtime: s.identity.mtime_seconds(),
            reference_time: view.timing.reference,
            written_at_distrusted: s.written_at_distrusted(),
            stale_at: view.timing.at(view.timing.stale_after),
            expire_at: view.timing.at(view.timing.expire_after),
            delete_at: view.timing.at(view.timing.delete_after),
        }
    }
}

/// What the status views show.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StatusModel {
    /// Whether the first full scan has finished.
    pub ready: bool,
    /// The directories.
    pub directories: Vec<DirStatus>,
    /// The files, in serving order.
    pub files: Vec<FileStatus>,
    /// Symlinks refused because they point outside their directory.
    pub refused: Vec<String>,
    /// The current conflicts (at most [`MAX_LISTED_CONFLICTS`]).
    pub conflicts: Vec<ConflictRecord>,
    /// How many conflicts there are in all.
    pub conflict_count: usize,
    /// The metrics path, for the page's link.
    pub telemetry_path: String,
}

fn now_seconds(now: SystemTime) -> f64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Serialize)]
struct JsonFile<'a> {
    #[serde(flatten)]
    file: &'a FileStatus,
    age_seconds: f64,
}

#[derive(Serialize)]
struct JsonView<'a> {
    version: &'static str,
    ready: bool,
    directories: &'a [DirStatus],
    files: Vec<JsonFile<'a>>,
    refused: &'a [String],
    conflicts: &'a [ConflictRecord],
    conflict_count: usize,
}

/// `/api/v1/files`: the model as JSON, with each file's age at `now`.
pub fn render_json(model: &StatusModel, now: SystemTime) -> String {
    let now = now_seconds(now);
    let view = JsonView {
        version: env!("CARGO_PKG_VERSION"),
        ready: model.ready,
        directories: &model.directories,
        files: model
            .files
            .iter()
            .map(|file| JsonFile {
                file,
                age_seconds: ((now - file.reference_time) * 1000.0).round() / 1000.0,
            })
            .collect(),
        refused: &model.refused,
        conflicts: &model.conflicts,
        conflict_count: model.conflict_count,
    };
    serde_json::to_string_pretty(&view).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn html_escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Formats an age in seconds as `3d4h`, `12m5s`, `850ms`.
pub fn human_age(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".to_string();
    }
    if seconds < 0.0 {
        return format!("in {}", human_age(-seconds));
    }
    if seconds < 1.0 {
        return format!("{}ms", (seconds * 1000.0) as u64);
    }
    let s = seconds as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m{sec}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// `/`: a small HTML page listing each file with its age, state, series and error.
pub fn render_html(model: &StatusModel, now: SystemTime) -> String {
    let now = now_seconds(now);
    let mut out = String::with_capacity(4096 + model.files.len() * 256);
    out.push_str(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>promdrop-exporter</title>\n\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
         .fresh{color:#070}.stale{color:#a60}.expired,.error{color:#b00}\
         code{font-size:90%}</style></head><body>\n<h1>promdrop-exporter</h1>\n",
    );
    let _ = write!(
        out,
        "<p>Version {} &middot; <a href=\"",
        env!("CARGO_PKG_VERSION")
    );
    html_escape(&model.telemetry_path, &mut out);
    out.push_str("\">Metrics</a> &middot; <a href=\"/api/v1/files\">JSON</a> &middot; ");
    out.push_str(if model.ready {
        "ready"
    } else {
        "not ready: first scan running"
    });
    out.push_str("</p>\n<h2>Directories</h2>\n<ul>\n");
    for dir in &model.directories {
        out.push_str("<li><code>");
        html_escape(&dir.path, &mut out);
        out.push_str("</code>");
        if let Some(e) = &dir.error {
            out.push_str(" <span class=\"error\">");
            html_escape(e, &mut out);
            out.push_str("</span>");
        }
        out.push_str("</li>\n");
    }
    let _ = write!(
        out,
        "</ul>\n<h2>Files ({})</h2>\n<table>\n<tr><th>file</th><th>age</th><th>state</th>\
         <th>series</th><th>bytes</th><th>error</th></tr>\n",
        model.files.len()
    );
    for f in &model.files {
        out.push_str("<tr><td><code>");
        html_escape(&f.path, &mut out);
        let _ = write!(
            out,
            "</code></td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td",
            human_age(now - f.reference_time),
            f.state,
            f.state,
            f.series,
            f.bytes
        );
        match &f.error {
            Some(e) => {
                out.push_str(" class=\"error\">");
                html_escape(e, &mut out);
            }
            None if f.written_at_distrusted => out.push_str(
                " class=\"error\">written_at in the header is later than the file's \
                 modification time: not trusted, its age counts from the modification time",
            ),
            None => out.push('>'),
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</table>\n");
    if !model.refused.is_empty() {
        out.push_str("<h2>Refused</h2>\n<ul>\n");
        for r in &model.refused {
            out.push_str("<li class=\"error\">");
            html_escape(r, &mut out);
            out.push_str("</li>\n");
        }
        out.push_str("</ul>\n");
    }
    let _ = writeln!(out, "<h2>Conflicts ({})</h2>\n<ul>", model.conflict_count);
    for c in &model.conflicts {
        out.push_str("<li>");
        html_escape(&c.to_string(), &mut out);
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_show_files_and_escape_them() {
        let model = StatusModel {
            ready: true,
            directories: vec![DirStatus {
                path: "/d".into(),
                error: None,
            }],
            files: vec![FileStatus {
                path: "/d/<b>.prom".into(),
                state: "stale",
                error: Some("1:3: bad & worse".into()),
                series: 0,
                bytes: 12,
                mtime: 100.0,
                reference_time: 100.0,
                written_at_distrusted: false,
                stale_at: Some(160.0),
                expire_at: None,
                delete_at: None,
            }],
            telemetry_path: "/metrics".into(),
            ..StatusModel::default()
        };
        let now = UNIX_EPOCH + std::time::Duration::from_secs(3700);
        let html = render_html(&model, now);
        assert!(html.contains("/d/&lt;b&gt;.prom"), "{html}");
        assert!(
            html.contains("<td>1h0m</td><td class=\"stale\">stale</td>"),
            "{html}"
        );
        assert!(html.contains("bad &amp; worse"), "{html}");
        let json: serde_json::Value = serde_json::from_str(&render_json(&model, now)).unwrap();
        assert_eq!(json["files"][0]["age_seconds"], 3600.0);
        assert_eq!(json["files"][0]["state"], "stale");
        assert_eq!(json["files"][0]["stale_at"], 160.0);
        assert_eq!(human_age(0.25), "250ms");
        assert_eq!(human_age(90_000.0), "1d1h");
    }
}
