//! The router's outermost layer: it reads once what a request asks (its attributes, from its method and path,
//! as upstream's RequestInfo does) and passes that on as a request extension (`Asked`) to the audit log,
//! fairness and authorization; and it counts what the request was and what it cost (`telemetry::Api`): every
//! request by verb, resource and code, the latency of those that end with their response, the watches open.
//!
//! Labels name only what the API serves: a path naming a resource it does not serve is counted with an empty
//! resource, so a client cannot make the metrics grow by inventing names.

use std::borrow::Cow;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use super::authorize;
use crate::apis::catalog::{self, Subresource};
use crate::security::rbac::{Attributes, ResourceAttributes};
use crate::telemetry::{self, Held, Requested};

/// What a request asks, as the router's first layer read it.
#[derive(Clone)]
pub struct Asked(pub Attributes);

/// What `request` asks: as the first layer read it, or read now (a request that did not come through it).
pub fn asked(request: &Request) -> Cow<'_, Attributes> {
    match request.extensions().get::<Asked>() {
        Some(Asked(attributes)) => Cow::Borrowed(attributes),
        None => Cow::Owned(authorize::attributes(request.method(), request.uri())),
    }
}

/// The middleware.
pub async fn measure(mut request: Request, next: Next) -> Response {
    let attributes = authorize::attributes(request.method(), request.uri());
    let requested = labels(request.method(), &request, &attributes);
    request.extensions_mut().insert(Asked(attributes));
    let started = Instant::now();
    let response = next.run(request).await;
    let api = &telemetry::get().api;
    let code = response.status().as_u16();
    let Requested { verb, group, resource, subresource } = requested.clone();
    api.requests.get_or_create(&telemetry::Request { verb, group, resource, subresource, code }).inc();
    match verb {
        "WATCH" if response.status().is_success() => {
            let open = Held::new(&api.long_running.get_or_create_owned(&requested));
            response.map(|body| {
                Body::from_stream(body.into_data_stream().map(move |chunk| {
                    let _open = &open;
                    chunk
                }))
            })
        }
        "WATCH" | "CONNECT" => response,
        _ => {
            telemetry::observe(&api.request_seconds.get_or_create(&requested), started.elapsed());
            response
        }
    }
}

/// A request's labels: its verb as kube-apiserver names it, and the served resource it names.
fn labels(method: &Method, request: &Request, attributes: &Attributes) -> Requested {
    let Attributes::Resource(asked) = attributes else {
        return Requested { verb: method_name(method), group: "", resource: "", subresource: "" };
    };
    let applying = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/apply-patch"));
    let verb = match (asked.verb.as_str(), asked.subresource.as_str()) {
        (_, "exec" | "attach") => "CONNECT",
        ("list", _) => "LIST",
        ("watch", _) => "WATCH",
        ("patch", _) if applying => "APPLY",
        _ => method_name(method),
    };
    let (group, resource, subresource) = served(asked);
    Requested { verb, group, resource, subresource }
}

/// The group, resource and subresource `asked` names, as the API serves them; empty where it serves no such
/// thing.
fn served(asked: &ResourceAttributes) -> (&'static str, &'static str, &'static str) {
    let Some(r) = catalog::named(&asked.group, &asked.resource) else { return ("", "", "") };
    let subresource =
        Subresource::ALL.into_iter().find(|s| s.name() == asked.subresource && r.has(*s)).map_or("", |s| s.name());
    (r.group, r.plural, subresource)
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(method: Method, uri: &str, content_type: Option<&str>) -> Requested {
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(t) = content_type {
            request = request.header(header::CONTENT_TYPE, t);
        }
        let request = request.body(Body::empty()).unwrap();
        let attributes = authorize::attributes(request.method(), request.uri());
        labels(request.method(), &request, &attributes)
    }

    fn requested(verb: &'static str, group: &'static str, resource: &'static str, sub: &'static str) -> Requested {
        Requested { verb, group, resource, subresource: sub }
    }

    #[test]
    fn requests_are_labelled_as_kube_apiserver_labels_them_and_only_with_what_is_served() {
        let cases = [
            (Method::GET, "/api/v1/namespaces/a/pods", None, requested("LIST", "", "pods", "")),
            (Method::GET, "/api/v1/pods?watch=true", None, requested("WATCH", "", "pods", "")),
            (
                Method::GET,
                "/apis/apps/v1/namespaces/a/deployments/d",
                None,
                requested("GET", "apps", "deployments", ""),
            ),
            (Method::POST, "/api/v1/namespaces/a/pods", None, requested("POST", "", "pods", "")),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/a/deployments/d/scale",
                None,
                requested("PUT", "apps", "deployments", "scale"),
            ),
            (
                Method::PATCH,
                "/api/v1/namespaces/a/configmaps/c",
                Some("application/apply-patch+yaml"),
                requested("APPLY", "", "configmaps", ""),
            ),
            (
                Method::PATCH,
                "/api/v1/namespaces/a/configmaps/c",
                Some("application/merge-patch+json"),
                requested("PATCH", "", "configmaps", ""),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/pods/p/exec?command=ls",
                None,
                requested("CONNECT", "", "pods", "exec"),
            ),
            (Method::DELETE, "/api/v1/namespaces/a/secrets", None, requested("DELETE", "", "secrets", "")),
            // What the API does not serve is not named.
            (Method::GET, "/apis/made.up/v1/inventions", None, requested("LIST", "", "", "")),
            (Method::GET, "/api/v1/namespaces/a/pods/p/nonsense", None, requested("GET", "", "pods", "")),
            (Method::GET, "/version", None, requested("GET", "", "", "")),
        ];
        for (method, uri, content_type, expected) in cases {
            assert_eq!(labels_of(method, uri, content_type), expected, "{uri}");
        }
    }
}
