//! How a finished command becomes a report: exit status 0 is a success with its standard
//! output, anything else an error naming the status with its standard error.

use serde_json::Value;

use super::child::{describe, Finished};
use super::tail::{tail_text, TAIL_BYTES};

/// The fields of a report, before the task's identity is added.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub output: Option<String>,
    pub actual_cost: Option<f64>,
    pub tokens_used: Option<u64>,
    /// `Some` for an error report.
    pub error: Option<String>,
}

impl Outcome {
    pub fn of(finished: &Finished) -> Outcome {
        if let Some(reason) = &finished.stopped {
            return failure(
                &format!("{reason}; the command ended with {}", describe(finished.status)),
                &finished.stderr,
            );
        }
        if finished.status.success() {
            success(&finished.stdout)
        } else {
            failure(&format!("the command ended with {}", describe(finished.status)), &finished.stderr)
        }
    }

    /// An error report for a command that could not be started at all.
    pub fn not_started(error: &std::io::Error) -> Outcome {
        Outcome { error: Some(format!("the command could not be started: {error}")), ..Outcome::default() }
    }
}

/// The whole standard output is the `output`, unless its last line is a JSON object with
/// `output`, `actualCost` or `tokensUsed`: then those fields are the report.
fn success(stdout: &[u8]) -> Outcome {
    let text = tail_text(stdout, TAIL_BYTES);
    let last_line = text.trim_end_matches(['\n', '\r']).rsplit('\n').next().unwrap_or("");
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(last_line) {
        if ["output", "actualCost", "tokensUsed"].iter().any(|name| fields.contains_key(*name)) {
            let output = match fields.get("output") {
                None | Some(Value::Null) => None,
                Some(Value::String(output)) => Some(output.clone()),
                Some(other) => Some(other.to_string()),
            };
            return Outcome {
                output,
                // The server takes at most six decimal places; a price per token times a
                // count often has more, so the worker reports the nearest millionth.
                actual_cost: fields.get("actualCost").and_then(Value::as_f64).map(|cost| (cost * 1e6).round() / 1e6),
                tokens_used: fields.get("tokensUsed").and_then(Value::as_u64),
                error: None,
            };
        }
    }
    Outcome { output: (!text.is_empty()).then_some(text), ..Outcome::default() }
}

/// `headline`, then as much of the end of standard error as fits in the server's limit.
fn failure(headline: &str, stderr: &[u8]) -> Outcome {
    let mut error = format!("{headline}\n");
    let room = TAIL_BYTES.saturating_sub(error.len());
    error.push_str(&tail_text(stderr, room));
    Outcome { error: Some(error), ..Outcome::default() }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;
    use crate::worker::child::StopReason;

    fn finished(code: i32, stdout: &str, stderr: &str) -> Finished {
        Finished {
            status: ExitStatus::from_raw(code << 8),
            stdout: stdout.into(),
            stderr: stderr.into(),
            stopped: None,
        }
    }

    #[test]
    fn exit_zero_reports_standard_output() {
        let outcome = Outcome::of(&finished(0, "line 1\nline 2\n", "noise"));
        assert_eq!(outcome, Outcome { output: Some("line 1\nline 2\n".into()), ..Outcome::default() });
        assert_eq!(Outcome::of(&finished(0, "", "")).output, None);
    }

    #[test]
    fn a_json_last_line_is_the_report() {
        let stdout = "working...\n{\"output\": \"done\", \"actualCost\": 1.5, \"tokensUsed\": 42}\n";
        let outcome = Outcome::of(&finished(0, stdout, ""));
        assert_eq!(
            outcome,
            Outcome { output: Some("done".into()), actual_cost: Some(1.5), tokens_used: Some(42), error: None }
        );
        // An object that says none of the report's fields is just output.
        let outcome = Outcome::of(&finished(0, "{\"answer\": 42}\n", ""));
        assert_eq!(outcome.output.as_deref(), Some("{\"answer\": 42}\n"));
        let outcome = Outcome::of(&finished(0, "{\"output\": {\"rows\": 3}}", ""));
        assert_eq!(outcome.output.as_deref(), Some("{\"rows\":3}"));
        // 1,234 tokens at $0.0000025 each: the server takes six decimal places.
        let outcome = Outcome::of(&finished(0, "{\"actualCost\": 0.003085}", ""));
        assert_eq!(outcome.actual_cost, Some(0.003085));
        let outcome = Outcome::of(&finished(0, "{\"actualCost\": 0.0030853}", ""));
        assert_eq!(outcome.actual_cost, Some(0.003085));
    }

    #[test]
    fn a_failure_names_the_status_and_carries_standard_error() {
        let outcome = Outcome::of(&finished(3, "ignored", "it broke\n"));
        assert_eq!(outcome.error.as_deref(), Some("the command ended with exit status 3\nit broke\n"));
        assert_eq!(outcome.output, None);
        let mut stopped = finished(0, "partial", "");
        stopped.stopped = Some(StopReason::Cancelled);
        assert!(Outcome::of(&stopped).error.unwrap().starts_with("cancelled; the command ended with exit status 0"));
    }

    #[test]
    fn a_huge_standard_error_still_fits_the_servers_limit() {
        let stderr = "é".repeat(TAIL_BYTES);
        let error = Outcome::of(&finished(1, "", &stderr)).error.unwrap();
        assert!(error.len() <= TAIL_BYTES && error.ends_with('é'), "{}", error.len());
    }
}
