//! One ARM request, as every handler of every ARM plane sees it: the verified caller, the
//! path split into percent-decoded segments (matched case-insensitively), the query, the
//! origin the client called, and the ARM response shapes that depend on them (paging with
//! an absolute `nextLink` that carries the rest of the query, `$filter` terms).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use crate::auth::Principal;

pub struct ArmCall {
    pub caller: Principal,
    pub method: Method,
    pub path: String,
    /// Percent-decoded path segments, as sent.
    pub segments: Vec<String>,
    /// The same, lower-cased, for matching.
    pub lower: Vec<String>,
    pub query: BTreeMap<String, String>,
    /// `host[:port]` the client called (links point back at it).
    pub origin: String,
    pub body: Bytes,
}

impl ArmCall {
    pub fn new(
        caller: Principal,
        method: Method,
        path: &str,
        query: BTreeMap<String, String>,
        origin: String,
        body: Bytes,
    ) -> Self {
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let lower = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
        ArmCall {
            caller,
            method,
            path: path.to_string(),
            segments,
            lower,
            query,
            origin,
            body,
        }
    }

    pub fn lower(&self) -> Vec<&str> {
        self.lower.iter().map(String::as_str).collect()
    }

    pub fn segment(&self, index: usize) -> &str {
        &self.segments[index]
    }

    /// The `$filter` of the request.
    pub fn filter(&self) -> Filter {
        let mut terms = BTreeMap::new();
        if let Some(filter) = self.query.get("$filter") {
            for term in split_and(filter) {
                if let Some((key, value)) = term.split_once(" eq ") {
                    let value = value.trim().trim_matches('\'').to_string();
                    terms.insert(key.trim().to_ascii_lowercase(), value);
                }
            }
        }
        Filter(terms)
    }

    /// A page of `items` after `$skipToken` (an offset; `$skiptoken` too), at most `$top`
    /// (else `default_top`, else all), with an absolute `nextLink` carrying the rest of
    /// the query.
    pub fn page(&self, items: Vec<Value>, default_top: Option<usize>) -> Response {
        let token = self
            .query
            .get("$skipToken")
            .or_else(|| self.query.get("$skiptoken"));
        let skip: usize = token.and_then(|s| s.parse().ok()).unwrap_or(0);
        let top = self
            .query
            .get("$top")
            .and_then(|s| s.parse().ok())
            .filter(|n: &usize| *n > 0)
            .or(default_top)
            .unwrap_or(usize::MAX);
        let total = items.len();
        let page: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
        let end = skip.saturating_add(page.len());
        let mut body = json!({ "value": page });
        if end < total {
            let mut query = self.query.clone();
            query.remove("$skiptoken");
            query.insert("$skipToken".into(), end.to_string());
            let query = serde_urlencoded::to_string(&query).unwrap_or_default();
            body["nextLink"] = format!("https://{}{}?{query}", self.origin, self.path).into();
        }
        (StatusCode::OK, Json(body)).into_response()
    }
}

/// `$filter` terms `key eq 'value'` joined by `and` (keys lower-cased).
pub struct Filter(BTreeMap<String, String>);

impl Filter {
    /// True when the filter says nothing about `key`, or names `value` (any case).
    pub fn admits(&self, key: &str, value: &str) -> bool {
        self.0
            .get(key)
            .is_none_or(|wanted| wanted.eq_ignore_ascii_case(value))
    }
}

/// `key eq 'a' and key2 eq 'b and c'`: splits on ` and ` outside quotes.
fn split_and(filter: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut rest = filter;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            quoted = !quoted;
        }
        // Compared as bytes: the 5th byte may fall inside a multi-byte character.
        if !quoted
            && rest
                .as_bytes()
                .get(..5)
                .is_some_and(|head| head.eq_ignore_ascii_case(b" and "))
        {
            terms.push(std::mem::take(&mut current));
            rest = &rest[5..];
            continue;
        }
        current.push(c);
        rest = &rest[c.len_utf8()..];
    }
    terms.push(current);
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(query: &[(&str, &str)]) -> ArmCall {
        ArmCall::new(
            Principal {
                tenant_id: String::new(),
                object_id: String::new(),
                app_id: String::new(),
                audience: String::new(),
                roles: vec![],
            },
            Method::GET,
            "/x",
            query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            "h".into(),
            Bytes::new(),
        )
    }

    #[test]
    fn filters_split_on_and_outside_quotes() {
        let filter = call(&[(
            "$filter",
            "backupManagementType eq 'MAB' and friendlyName eq 'a and b'",
        )])
        .filter();
        assert!(filter.admits("backupmanagementtype", "mab"));
        assert!(filter.admits("friendlyname", "A and B"));
        assert!(!filter.admits("friendlyname", "a"));
        assert!(filter.admits("status", "anything"));
    }

    #[test]
    fn a_filter_with_multi_byte_characters_does_not_panic() {
        for filter in ["aé€x and b eq 'c'", "é", "€€€€ and", "x eq 'é and €'"] {
            let terms = split_and(filter);
            assert!(!terms.is_empty(), "{filter}");
        }
        assert_eq!(split_and("aé€x and b eq 'c'"), vec!["aé€x", "b eq 'c'"]);
    }

    #[tokio::test]
    async fn pages_link_to_the_rest_with_the_query_kept() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let body = |response: Response| async move {
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        };
        let first = body(call(&[("api-version", "1")]).page(items.clone(), Some(2))).await;
        assert_eq!(first["value"], json!([0, 1]));
        assert_eq!(
            first["nextLink"],
            "https://h/x?%24skipToken=2&api-version=1"
        );
        let last = body(call(&[("$skiptoken", "4")]).page(items.clone(), Some(2))).await;
        assert_eq!(last["value"], json!([4]));
        assert!(last.get("nextLink").is_none());
        let all = body(call(&[]).page(items, None)).await;
        assert_eq!(all["value"].as_array().unwrap().len(), 5);
    }
}
