//! The tests' own clients. [`Api`] speaks to one gateway's local API with
//! one method per endpoint (and [`Api::request`] for odd requests the
//! refusal tests make); the peer-port helpers present a node's certificate
//! (or none, or a rogue one) to another node's peer port.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use homeward::tls::{self, Identity};
use reqwest::Method;
use serde_json::Value;

use super::gateway::{Pair, TOKEN};
use super::pki::Pki;

/// A response: status and JSON body (Null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// A response whose body is text (metrics, pages).
#[derive(Debug, Clone)]
pub struct TextReply {
    pub status: u16,
    pub text: String,
}

/// A client of one gateway's local API, sending a bearer token.
#[derive(Clone, Debug)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

type Sent<T> = Result<T, reqwest::Error>;

impl Api {
    /// A client of the local API at `addr`, trusting the CA at `api_ca`.
    pub fn new(addr: SocketAddr, api_ca: &Path, token: &str) -> Self {
        let ca = tls::load_certs(api_ca).expect("API CA");
        let config = tls::api_client_config(&ca).expect("API client config");
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("API client");
        Self {
            client,
            base: format!("https://127.0.0.1:{}", addr.port()),
            token: token.to_string(),
        }
    }

    /// The same client with another bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: token.to_string(),
            ..self.clone()
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, for requests built by hand.
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// Any request to `path`, with this client's token; for refusal tests
    /// (odd bodies, headers, methods or paths). Send it with [`Api::send`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
    }

    /// Sends a request; status and JSON body.
    pub async fn send(request: reqwest::RequestBuilder) -> Sent<Reply> {
        let resp = request.send().await?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    async fn send_text(request: reqwest::RequestBuilder) -> Sent<TextReply> {
        let resp = request.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok(TextReply { status, text })
    }

    /// `GET` of any path (odd paths and parameters of refusal tests).
    pub async fn get(&self, path: &str) -> Sent<Reply> {
        Self::send(self.request(Method::GET, path)).await
    }

    /// `POST /v1/messages`.
    pub async fn submit(&self, message: &Value) -> Sent<Reply> {
        Self::send(self.request(Method::POST, "/v1/messages").json(message)).await
    }

    /// `POST /v1/messages` with any content type and bytes.
    pub async fn submit_raw(&self, content_type: &str, body: Vec<u8>) -> Sent<Reply> {
        Self::send(
            self.request(Method::POST, "/v1/messages")
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// `POST /v1/messages/batch` of `messages`, on behalf of `officer` if
    /// one is named.
    pub async fn submit_batch(&self, messages: &[Value], officer: Option<&str>) -> Sent<Reply> {
        let mut request = self
            .request(Method::POST, "/v1/messages/batch")
            .json(&serde_json::json!({ "messages": messages }));
        if let Some(officer) = officer {
            request = request.header("On-Behalf-Of", officer);
        }
        Self::send(request).await
    }

    /// `GET /v1/messages/{id}`: a message's status.
    pub async fn message(&self, id: &str) -> Sent<Reply> {
        self.get(&format!("/v1/messages/{id}")).await
    }

    /// `GET /v1/inbox?after=&limit=`: one page of the inbox feed.
    pub async fn inbox(&self, after: Option<&str>, limit: Option<usize>) -> Sent<Reply> {
        let mut query = Vec::new();
        if let Some(after) = after {
            query.push(format!("after={after}"));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        let path = if query.is_empty() {
            "/v1/inbox".to_string()
        } else {
            format!("/v1/inbox?{}", query.join("&"))
        };
        self.get(&path).await
    }

    /// `GET /v1/cases/{case_ref}`.
    pub async fn case(&self, case_ref: &str) -> Sent<Reply> {
        self.get(&format!("/v1/cases/{case_ref}")).await
    }

    /// `GET /v1/timers`, optionally `?state=`.
    pub async fn timers(&self, state: Option<&str>) -> Sent<Reply> {
        match state {
            Some(state) => self.get(&format!("/v1/timers?state={state}")).await,
            None => self.get("/v1/timers").await,
        }
    }

    /// `GET /v1/sla`.
    pub async fn sla(&self) -> Sent<Reply> {
        self.get("/v1/sla").await
    }

    /// `POST /v1/outbox/{id}/retry`.
    pub async fn outbox_retry(&self, id: &str) -> Sent<Reply> {
        Self::send(self.request(Method::POST, &format!("/v1/outbox/{id}/retry"))).await
    }

    /// `GET /v1/audit`, optionally `?case_ref=`.
    pub async fn audit(&self, case_ref: Option<&str>) -> Sent<Reply> {
        match case_ref {
            Some(case) => self.get(&format!("/v1/audit?case_ref={case}")).await,
            None => self.get("/v1/audit").await,
        }
    }

    /// `GET /metrics`, as text.
    pub async fn metrics_text(&self) -> Sent<TextReply> {
        Self::send_text(self.request(Method::GET, "/metrics")).await
    }

    /// `GET /v1/dashboard`.
    pub async fn dashboard(&self) -> Sent<Reply> {
        self.get("/v1/dashboard").await
    }

    /// `POST /v1/validate`.
    pub async fn validate(&self, message: &Value) -> Sent<Reply> {
        Self::send(self.request(Method::POST, "/v1/validate").json(message)).await
    }

    /// `GET /v1/schemas`.
    pub async fn schemas(&self) -> Sent<Reply> {
        self.get("/v1/schemas").await
    }

    /// `GET /v1/schemas/{message_type}/{version}`.
    pub async fn schema(&self, message_type: &str, version: u32) -> Sent<Reply> {
        self.get(&format!("/v1/schemas/{message_type}/{version}"))
            .await
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Sent<Reply> {
        self.get("/v1/health").await
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Sent<Reply> {
        self.get("/openapi.json").await
    }

    /// Polls a message's status until it leaves `queued`/`delivering`; for
    /// the tests about the delivery loop itself (others drive the worker).
    pub async fn wait_final(&self, message_id: &str, timeout: Duration) -> Option<Value> {
        let start = tokio::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(r) = self.message(message_id).await {
                let state = r.body["state"].as_str().unwrap_or("");
                if !matches!(state, "queued" | "delivering" | "") {
                    return Some(r.body);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// A caseworker's client of `cc`'s local API at `addr`.
pub fn api(pki: &Pki, cc: &str, addr: SocketAddr) -> Api {
    Api::new(addr, &pki.paths(cc).ca_cert, TOKEN)
}

/// Every message in a node's inbox feed, paging through it.
pub async fn read_inbox(api: &Api) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let r = api.inbox(Some(&cursor), Some(1000)).await.expect("inbox");
        assert_eq!(r.status, 200, "{}", r.body);
        let batch = r.body["messages"].as_array().cloned().unwrap_or_default();
        if batch.is_empty() {
            return all;
        }
        cursor = r.body["next_cursor"].as_str().expect("cursor").to_string();
        all.extend(batch);
    }
}

/// A client of `server`'s peer port presenting `identity` (or none).
pub fn peer_client(pki: &Pki, server: &str, identity: Option<&Identity>) -> reqwest::Client {
    let ca = tls::load_certs(&pki.paths(server).ca_cert).expect("ca");
    let config = tls::peer_client_config(identity, &ca, &[], server).expect("client config");
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The single-message route of the peer port at `peer`.
pub fn peer_url(peer: SocketAddr) -> String {
    format!("https://127.0.0.1:{}/peer/v1/messages", peer.port())
}

/// The batch route of the peer port at `peer`.
pub fn peer_batch_url(peer: SocketAddr) -> String {
    format!("https://127.0.0.1:{}/peer/v1/messages/batch", peer.port())
}

/// POSTs `msg` to `url` with `client`; status and JSON body.
pub async fn peer_post_to(client: &reqwest::Client, url: &str, msg: &Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .json(msg)
        .send()
        .await
        .expect("peer port answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

impl Pair {
    pub fn kh_api(&self) -> Api {
        api(&self.pki, "KH", self.kh.api_addr)
    }

    pub fn th_api(&self) -> Api {
        api(&self.pki, "TH", self.th.api_addr)
    }

    /// A client of KH's peer port presenting `identity` (or none).
    pub fn kh_peer_client(&self, identity: Option<&Identity>) -> reqwest::Client {
        peer_client(&self.pki, "KH", identity)
    }

    /// POSTs `msg` to KH's peer port with `client`; status and JSON body.
    pub async fn peer_post(&self, client: &reqwest::Client, msg: &Value) -> (u16, Value) {
        peer_post_to(client, &self.kh_peer_url(), msg).await
    }

    pub fn kh_peer_url(&self) -> String {
        peer_url(self.kh.peer_addr)
    }

    pub fn kh_peer_batch_url(&self) -> String {
        peer_batch_url(self.kh.peer_addr)
    }
}
