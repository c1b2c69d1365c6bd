//! How fltctl words a failed API response. fleetctl used Google's generated API client, so
//! errors read `googleapi: Error <code>: <message>`, or, when the body carries no message,
//! `googleapi: got HTTP response code <code> with body: <body>`.

use serde_json::Value;

/// The error text for a response with a non-2xx `status` and this body.
pub fn response_error(status: u16, body: &str) -> String {
    if let Some((code, message)) = error_entity(body) {
        let code = if code == 0 { i64::from(status) } else { code };
        if message.is_empty() {
            return format!("googleapi: got HTTP response code {code} with body: {body}");
        }
        return format!("googleapi: Error {code}: {message}")
            .trim()
            .to_string();
    }
    format!("googleapi: got HTTP response code {status} with body: {body}")
}

/// `{"error":{"code":…,"message":…}}`, with Go's strictness: the whole body must be JSON and the
/// fields, when present, of the right types.
fn error_entity(body: &str) -> Option<(i64, String)> {
    let value: Value = serde_json::from_str(body).ok()?;
    let error = value.as_object()?.get("error")?.as_object()?;
    let code = match error.get("code") {
        None | Some(Value::Null) => 0,
        Some(code) => code.as_i64()?,
    };
    let message = match error.get("message") {
        None | Some(Value::Null) => String::new(),
        Some(message) => message.as_str()?.to_string(),
    };
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_entity_with_message() {
        assert_eq!(
            response_error(
                400,
                r#"{"error":{"code":400,"message":"cannot activate template \"x@.service\""}}"#
            ),
            r#"googleapi: Error 400: cannot activate template "x@.service""#
        );
        // A zero or missing code falls back to the HTTP status.
        assert_eq!(
            response_error(404, r#"{"error":{"message":"unit does not exist"}}"#),
            "googleapi: Error 404: unit does not exist"
        );
    }

    #[test]
    fn no_message_shows_the_body() {
        let body = r#"{"error":{"code":500,"message":""}}"#;
        assert_eq!(
            response_error(500, body),
            format!("googleapi: got HTTP response code 500 with body: {body}")
        );
        assert_eq!(
            response_error(503, "flt server unable to communicate with etcd\n"),
            "googleapi: got HTTP response code 503 with body: flt server unable to communicate with etcd\n"
        );
        assert_eq!(
            response_error(502, r#"{"error":null}"#),
            r#"googleapi: got HTTP response code 502 with body: {"error":null}"#
        );
        assert_eq!(
            response_error(400, r#"{"error":{"code":"400","message":"x"}}"#),
            r#"googleapi: got HTTP response code 400 with body: {"error":{"code":"400","message":"x"}}"#
        );
    }
}
