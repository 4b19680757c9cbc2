//! The dashboard: static assets compiled into the binary, so serving it needs no Node.js
//! and no build step. Live data comes from the JSON API and `GET /api/events`.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Every asset, by the name it is served under (`/` serves `index.html`).
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("assets/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("assets/api.js")),
    ("store.js", "text/javascript; charset=utf-8", include_str!("assets/store.js")),
    ("view.js", "text/javascript; charset=utf-8", include_str!("assets/view.js")),
    ("detail.js", "text/javascript; charset=utf-8", include_str!("assets/detail.js")),
    ("chart.js", "text/javascript; charset=utf-8", include_str!("assets/chart.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
];

pub async fn index() -> Response {
    serve("index.html")
}

pub async fn asset(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "no-cache")], *body).into_response()
        }
        None => crate::api::error::ApiError::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            format!("no asset named `{name}`"),
        )
        .into_response(),
    }
}
