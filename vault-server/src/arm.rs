//! One ARM request, as every handler sees it: the verified caller, the path split into
//! percent-decoded segments (matched case-insensitively), the query, and helpers for the
//! ARM response shapes (paging with an absolute `nextLink` that carries `$filter`).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sim_core::auth::Principal;

use crate::error::{Result, VsError};

/// Items per page when the client does not say (`$top`).
const DEFAULT_PAGE: usize = 100;

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

    pub fn no_route(&self) -> VsError {
        VsError::NoRoute {
            method: self.method.to_string(),
            path: self.path.clone(),
        }
    }

    /// The body as `T`; errors name the field.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        parse_json(&self.body)
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

    /// A page of `items` after `$skipToken` (an offset), at most `$top`, with an absolute
    /// `nextLink` carrying the rest of the query.
    pub fn page(&self, items: Vec<Value>) -> Response {
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
            .unwrap_or(DEFAULT_PAGE);
        let total = items.len();
        let page: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
        let end = skip + page.len();
        let mut body = json!({ "value": page });
        if end < total {
            let mut query = self.query.clone();
            query.remove("$skiptoken");
            query.insert("$skipToken".into(), end.to_string());
            let query = serde_urlencoded::to_string(&query).unwrap_or_default();
            body["nextLink"] = format!("https://{}{}?{query}", self.origin, self.path).into();
        }
        ok(body)
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

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    sim_core::arm::parse_body(body).map_err(VsError::BadRequest)
}

pub fn ok(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

pub fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

pub use sim_core::arm::iso;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_split_on_and_outside_quotes() {
        let call = ArmCall::new(
            Principal {
                tenant_id: String::new(),
                object_id: String::new(),
                app_id: String::new(),
                audience: String::new(),
                roles: vec![],
            },
            Method::GET,
            "/x",
            [(
                "$filter".to_string(),
                "backupManagementType eq 'MAB' and friendlyName eq 'a and b'".to_string(),
            )]
            .into(),
            "h".into(),
            Bytes::new(),
        );
        let filter = call.filter();
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
}
