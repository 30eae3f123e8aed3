//! The API's wire protocol, as pure functions: a request is one line holding a JSON object
//! `{"command": NAME}`; the answer is one line holding a JSON object with `"ok": true` and the
//! command's fields, or `"ok": false` and `"error"`. After a successful `console` the
//! connection carries the serial console's raw bytes both ways.

use serde_json::{Map, Value, json};

/// Longest request line accepted.
pub const MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// State, uptime, boot marker, devices.
    Status,
    /// Press the ACPI power button; the guest has the shutdown timeout to power off.
    Shutdown,
    /// Stop the VM at once (the disks are still flushed).
    PowerOff,
    /// Switch this connection to the serial console.
    Console,
}

pub const COMMANDS: &[&str] = &["status", "shutdown", "power-off", "console"];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("request is not JSON: {0}")]
    NotJson(String),
    #[error("request must be a JSON object like {{\"command\":\"status\"}}")]
    NotAnObject,
    #[error("request has no \"command\" string")]
    NoCommand,
    #[error("unknown command '{0}'; known: status, shutdown, power-off, console")]
    UnknownCommand(String),
    #[error("request line longer than {MAX_LINE} bytes")]
    TooLong,
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &str) -> Result<Request, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong);
    }
    let v: Value = serde_json::from_str(line).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let obj = v.as_object().ok_or(ProtocolError::NotAnObject)?;
    let cmd = obj
        .get("command")
        .and_then(Value::as_str)
        .ok_or(ProtocolError::NoCommand)?;
    match cmd {
        "status" => Ok(Request::Status),
        "shutdown" => Ok(Request::Shutdown),
        "power-off" => Ok(Request::PowerOff),
        "console" => Ok(Request::Console),
        other => Err(ProtocolError::UnknownCommand(other.to_owned())),
    }
}

/// A success line: `{"ok":true, ...fields}`.
pub fn ok(fields: Map<String, Value>) -> String {
    let mut m = Map::new();
    m.insert("ok".into(), Value::Bool(true));
    m.extend(fields);
    let mut s = Value::Object(m).to_string();
    s.push('\n');
    s
}

/// A failure line: `{"ok":false,"error":TEXT}`.
pub fn error(text: &str) -> String {
    let mut s = json!({"ok": false, "error": text}).to_string();
    s.push('\n');
    s
}

/// Fields from a `json!({...})` object literal.
pub fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_commands_vmctl_sends() {
        assert_eq!(
            parse_request(r#"{"command":"status"}"#),
            Ok(Request::Status)
        );
        assert_eq!(
            parse_request(r#" {"command": "shutdown"} "#),
            Ok(Request::Shutdown)
        );
        assert_eq!(
            parse_request(r#"{"command":"power-off","extra":1}"#),
            Ok(Request::PowerOff)
        );
        assert_eq!(
            parse_request(r#"{"command":"console"}"#),
            Ok(Request::Console)
        );
    }

    #[test]
    fn each_bad_request_has_its_error() {
        assert!(matches!(
            parse_request("status"),
            Err(ProtocolError::NotJson(_))
        ));
        assert_eq!(parse_request("[1]"), Err(ProtocolError::NotAnObject));
        assert_eq!(
            parse_request(r#"{"cmd":"x"}"#),
            Err(ProtocolError::NoCommand)
        );
        assert_eq!(
            parse_request(r#"{"command":7}"#),
            Err(ProtocolError::NoCommand)
        );
        assert_eq!(
            parse_request(r#"{"command":"reboot"}"#),
            Err(ProtocolError::UnknownCommand("reboot".into()))
        );
        let long = format!(r#"{{"command":"{}"}}"#, "x".repeat(MAX_LINE));
        assert_eq!(parse_request(&long), Err(ProtocolError::TooLong));
    }

    #[test]
    fn replies_are_single_json_lines() {
        let line = ok(fields(json!({"state": "running", "uptime_ms": 5})));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["state"], "running");
        let e: Value = serde_json::from_str(&error("already shutting down\nreally")).unwrap();
        assert_eq!(e["ok"], false);
        assert!(!error("a\nb").trim_end().contains('\n'));
    }
}
