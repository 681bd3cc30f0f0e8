//! The OpenAPI 3.1 document for `/api/v1` (and the DICOMweb paths the hub adds), served at
//! `/api/openapi.json`. Written by hand; a test checks it names every route the router serves.

use axum::http::header;
use axum::response::IntoResponse;

pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route("…")` in the router (lib.rs) is a path of the document, with each method it serves.
    #[test]
    fn the_document_covers_every_route() {
        let doc: serde_json::Value =
            serde_json::from_str(OPENAPI_JSON).expect("openapi.json parses");
        let paths = doc["paths"].as_object().expect("paths");
        let src = include_str!("lib.rs");
        let mut checked = 0;
        // A route call may span lines (rustfmt breaks long ones): take the text from each `.route(` to
        // the next one, and its first quoted string as the path.
        for line in src.split(".route(").skip(1) {
            let line = line.split(".layer(").next().unwrap_or(line);
            let path = line.split('"').nth(1).expect("quoted path");
            // Axum's catch-all `{*path}` is documented as `{path}`.
            let path = &path.replace("{*", "{");
            let entry = paths
                .get(path.as_str())
                .unwrap_or_else(|| panic!("{path} is served but missing from openapi.json"));
            // Handlers are passed by name (`get(api::me)`), so `get(` only ever appears as the method router.
            for method in ["get", "post", "put"] {
                if line.contains(&format!("{method}(")) {
                    assert!(
                        entry.get(method).is_some(),
                        "{method} {path} is served but not documented"
                    );
                }
            }
            checked += 1;
        }
        assert!(checked >= 15, "found only {checked} routes");
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
