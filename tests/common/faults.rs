//! Fault injection on loopback, owned by the tests (no toxiproxy here): a TCP proxy that can
//! refuse, reset, stall, truncate or delay a stream (put between avscan and clamd), and an HTTP
//! proxy that fails a chosen share of the emulator's requests by operation (put between avscan
//! and S3, SQS or SNS). Both apply a fault to connections already open, because avscan pools
//! its clamd sessions and its HTTP connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// What the TCP proxy does to client→server bytes. Counts start when the fault is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TcpFault {
    Pass,
    /// The server is down: new connections are reset at once, open ones on their next bytes.
    Down,
    /// Each connection is reset (RST) once it has forwarded this many more bytes.
    ResetAfter(u64),
    /// Each connection forwards this many more bytes, then nothing, silently, until healed.
    StallAfter(u64),
    /// Each connection forwards this many more bytes, then closes towards the server (FIN).
    TruncateAfter(u64),
    /// Every chunk waits this long before it is forwarded.
    Delay(Duration),
}

pub enum Upstream {
    Tcp(String),
    Unix(PathBuf),
}

impl Upstream {
    /// From an avscan `CLAMD_ADDRESS` (`tcp://host:port` or `unix:///path`).
    pub fn from_clamd_address(address: &str) -> Upstream {
        match address.strip_prefix("unix://") {
            Some(path) => Upstream::Unix(path.into()),
            None => Upstream::Tcp(address.trim_start_matches("tcp://").to_owned()),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The fault and a generation that changes with it, so connections restart their counts.
#[derive(Default)]
struct FaultState {
    fault: Option<TcpFault>,
    generation: u64,
}

pub struct TcpFaultProxy {
    pub address: SocketAddr,
    state: Arc<Mutex<FaultState>>,
    /// Connections accepted so far: shows that avscan reconnected.
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpFaultProxy {
    pub async fn start(upstream: Upstream) -> TcpFaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FaultState::default()));
        let accepted = Arc::new(AtomicU64::new(0));
        let upstream = Arc::new(upstream);
        let task = tokio::spawn({
            let state = state.clone();
            let accepted = accepted.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(proxy_connection(client, upstream.clone(), state.clone()));
                }
            }
        });
        TcpFaultProxy {
            address,
            state,
            accepted,
            task,
        }
    }

    /// The `CLAMD_ADDRESS` that goes through this proxy.
    pub fn clamd_address(&self) -> String {
        format!("tcp://{}", self.address)
    }

    pub fn set(&self, fault: TcpFault) {
        let mut state = lock(&self.state);
        state.fault = Some(fault);
        state.generation += 1;
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn current(&self) -> (TcpFault, u64) {
        let state = lock(&self.state);
        (state.fault.unwrap_or(TcpFault::Pass), state.generation)
    }
}

impl Drop for TcpFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reset(client: TcpStream) {
    // Linger zero turns the close into a RST, as a crashed peer's kernel would send.
    let _ = client.set_zero_linger();
    drop(client);
}

async fn proxy_connection(client: TcpStream, upstream: Arc<Upstream>, state: Arc<Mutex<FaultState>>) {
    let current = || {
        let state = lock(&state);
        (state.fault.unwrap_or(TcpFault::Pass), state.generation)
    };
    if current().0 == TcpFault::Down {
        return reset(client);
    }
    let server: Box<dyn Stream> = match &*upstream {
        Upstream::Tcp(address) => match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                Box::new(stream)
            }
            Err(_) => return reset(client),
        },
        Upstream::Unix(path) => match UnixStream::connect(path).await {
            Ok(stream) => Box::new(stream),
            Err(_) => return reset(client),
        },
    };
    let _ = client.set_nodelay(true);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let (mut client_read, mut client_write) = client.into_split();
    // Server to client: passed through as is; ends when either side closes.
    let downstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
        client_write
    });
    let mut buffer = vec![0u8; 64 * 1024];
    let mut counted = (u64::MAX, 0u64); // (generation, bytes forwarded under it)
    loop {
        let n = match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (fault, generation) = current();
        if counted.0 != generation {
            counted = (generation, 0);
        }
        let budget = |limit: u64| limit.saturating_sub(counted.1).min(n as u64) as usize;
        let (forward, then) = match fault {
            TcpFault::Pass => (n, None),
            TcpFault::Down => (0, Some(fault)),
            TcpFault::Delay(delay) => {
                tokio::time::sleep(delay).await;
                (n, None)
            }
            TcpFault::ResetAfter(limit) | TcpFault::StallAfter(limit) | TcpFault::TruncateAfter(limit) => {
                let forward = budget(limit);
                (forward, (counted.1 + forward as u64 >= limit).then_some(fault))
            }
        };
        if forward > 0 && server_write.write_all(&buffer[..forward]).await.is_err() {
            break;
        }
        counted.1 += forward as u64;
        match then {
            None => continue,
            Some(TcpFault::StallAfter(_)) => {
                // Silence: hold both ends open until the fault changes, then carry on with the
                // rest of this read (a stall delays bytes, it never loses them).
                while current().1 == generation {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if server_write.write_all(&buffer[forward..n]).await.is_err() {
                    break;
                }
                counted.1 += (n - forward) as u64;
            }
            Some(TcpFault::TruncateAfter(_)) => {
                let _ = server_write.shutdown().await;
                // Keep reading the client so that its writes do not fail: only clamd sees the cut.
                while matches!(client_read.read(&mut buffer).await, Ok(n) if n > 0) {}
                break;
            }
            Some(_) => {
                // Reset or down: RST towards the client (once both halves are gone), drop the
                // server side.
                let _ = client_read.as_ref().set_zero_linger();
                downstream.abort();
                return;
            }
        }
    }
    let _ = server_write.shutdown().await;
    let _ = downstream.await;
}

/// One HTTP fault rule: requests of `operation` fail with `fault`, `every` n-th one.
#[derive(Debug, Clone)]
pub struct HttpRule {
    pub operation: &'static str,
    /// 1 fails every request of the operation, 3 every third (the 1st, 4th, ...).
    pub every: u64,
    pub fault: HttpFault,
    /// Stop after this many injected faults (`u64::MAX` for never).
    pub limit: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HttpFault {
    /// Answer with this status and an AWS-shaped error body, without forwarding.
    Status(u16),
    /// S3's CopyObject "200 with an error inside": not forwarded, so nothing was copied.
    OkWithErrorBody,
    /// A response body that arrives `chunk` bytes at a time, one chunk per `every`: a slow
    /// network, for scans that take long while making progress.
    Trickle { chunk: usize, every: Duration },
    /// SQS DeleteMessageBatch: the first entry is not forwarded and reported as failed
    /// server-side; the others are deleted.
    FirstBatchEntryFails,
}

#[derive(Default)]
struct HttpState {
    rules: Vec<HttpRule>,
    /// Requests seen per operation, and faults injected per operation.
    seen: HashMap<String, u64>,
    injected: HashMap<String, u64>,
    /// Every request body of these operations, for tests that look at what was retried.
    recorded: HashMap<String, Vec<Bytes>>,
    /// (operation, resource) of every request: the bucket, queue or topic name it acted on.
    targets: std::collections::BTreeSet<(String, String)>,
}

pub struct HttpFaultProxy {
    pub url: String,
    state: Arc<Mutex<HttpState>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpFaultProxy {
    pub async fn start(upstream: String) -> HttpFaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(HttpState::default()));
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let state = state.clone();
                    let client = client.clone();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            handle(request, client.clone(), upstream.clone(), state.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        HttpFaultProxy { url, state, task }
    }

    pub fn add(&self, rule: HttpRule) {
        lock(&self.state).rules.push(rule);
    }

    pub fn clear(&self) {
        lock(&self.state).rules.clear();
    }

    pub fn record(&self, operation: &str) {
        lock(&self.state).recorded.entry(operation.to_owned()).or_default();
    }

    pub fn recorded(&self, operation: &str) -> Vec<Bytes> {
        lock(&self.state).recorded.get(operation).cloned().unwrap_or_default()
    }

    pub fn seen(&self, operation: &str) -> u64 {
        lock(&self.state).seen.get(operation).copied().unwrap_or(0)
    }

    pub fn injected(&self, operation: &str) -> u64 {
        lock(&self.state).injected.get(operation).copied().unwrap_or(0)
    }

    /// Every (operation, bucket / queue / topic name) seen; a copy also names its source bucket
    /// as ("CopyObject:source", bucket).
    pub fn targets(&self) -> std::collections::BTreeSet<(String, String)> {
        lock(&self.state).targets.clone()
    }

    /// Requests seen per operation.
    pub fn calls(&self) -> HashMap<String, u64> {
        lock(&self.state).seen.clone()
    }
}

impl Drop for HttpFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The AWS operation a request is, from the SQS JSON target, a query `Action`, or S3's REST shape.
pub fn operation_of(method: &str, path: &str, query: &str, headers: &hyper::HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if let Some(action) = std::str::from_utf8(body)
        .ok()
        .and_then(|body| body.split('&').find_map(|pair| pair.strip_prefix("Action=")))
    {
        return action.to_owned();
    }
    if query.split('&').any(|pair| pair == "list-type=2") {
        return "ListObjects".to_owned();
    }
    if method == "GET"
        && query
            .split('&')
            .any(|pair| pair == "versions" || pair.starts_with("versions="))
    {
        return "ListObjectVersions".to_owned();
    }
    // `/bucket/key`; a bucket's own calls are `/bucket` or `/bucket/`.
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let part = query.split('&').any(|pair| pair.starts_with("partNumber="));
    let copy = headers.contains_key("x-amz-copy-source");
    let tagging = query
        .split('&')
        .any(|pair| pair == "tagging" || pair.starts_with("tagging="));
    match method {
        "GET" if has_key && tagging => "GetObjectTagging",
        "PUT" if has_key && tagging => "PutObjectTagging",
        "GET" if has_key => "GetObject",
        "GET" if query.split('&').any(|pair| pair.starts_with("versioning")) => "GetBucketVersioning",
        "GET" if query.split('&').any(|pair| pair.starts_with("lifecycle")) => "GetBucketLifecycleConfiguration",
        "GET" => "ListObjects",
        "HEAD" if has_key => "HeadObject",
        "HEAD" => "HeadBucket",
        "PUT" if copy && part => "UploadPartCopy",
        "PUT" if copy => "CopyObject",
        "PUT" if part => "UploadPart",
        "PUT" if has_key => "PutObject",
        "PUT" => "CreateBucket",
        "DELETE" => "DeleteObject",
        "POST" if query.contains("uploads") => "CreateMultipartUpload",
        "POST" if query.contains("uploadId") => "CompleteMultipartUpload",
        _ => "Other",
    }
    .to_owned()
}

type ProxyBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The resources a request acts on: the queue (SQS JSON `QueueUrl` / `QueueName`), the event
/// bus (EventBridge JSON), the topic
/// (SNS `TopicArn`), or the bucket (S3 path style, and a copy's source).
fn targets_of(operation: &str, path: &str, headers: &hyper::HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let last = |s: &str, separator: char| s.rsplit(separator).next().unwrap_or(s).to_owned();
    if headers.contains_key("x-amz-target") {
        let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        // SQS' queue, or EventBridge's bus (PutEvents names it per entry, DescribeEventBus as Name).
        let resource = request["QueueUrl"]
            .as_str()
            .map(|url| last(url, '/'))
            .or_else(|| request["QueueName"].as_str().map(str::to_owned))
            .or_else(|| request["Entries"][0]["EventBusName"].as_str().map(str::to_owned))
            .or_else(|| request["Name"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return vec![(operation.to_owned(), resource)];
    }
    if let Some(arn) = std::str::from_utf8(body)
        .ok()
        .and_then(|body| body.split('&').find_map(|pair| pair.strip_prefix("TopicArn=")))
    {
        let arn = percent_encoding::percent_decode_str(arn)
            .decode_utf8_lossy()
            .into_owned();
        return vec![(operation.to_owned(), last(&arn, ':'))];
    }
    let bucket = path.trim_start_matches('/').split('/').next().unwrap_or("").to_owned();
    let mut targets = vec![(operation.to_owned(), bucket)];
    if let Some(source) = headers.get("x-amz-copy-source").and_then(|v| v.to_str().ok()) {
        let source = percent_encoding::percent_decode_str(source.trim_start_matches('/')).decode_utf8_lossy();
        let bucket = source.split('/').next().unwrap_or("").to_owned();
        targets.push((format!("{operation}:source"), bucket));
    }
    targets
}

fn respond(status: u16, body: impl Into<Bytes>) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

/// `body`, `chunk` bytes at a time, one chunk per `every`.
fn trickle(body: Bytes, chunk: usize, every: Duration) -> ProxyBody {
    let chunks: Vec<Bytes> = (0..body.len())
        .step_by(chunk)
        .map(|at| body.slice(at..(at + chunk).min(body.len())))
        .collect();
    let stream = futures::stream::iter(chunks).then(move |chunk| async move {
        tokio::time::sleep(every).await;
        Ok::<_, Infallible>(hyper::body::Frame::data(chunk))
    });
    BodyExt::boxed(http_body_util::StreamBody::new(stream))
}

async fn handle(
    request: Request<Incoming>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: String,
    state: Arc<Mutex<HttpState>>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let mut body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let operation = operation_of(parts.method.as_str(), parts.uri.path(), &query, &parts.headers, &body);
    let targets = targets_of(&operation, parts.uri.path(), &parts.headers, &body);
    let fault = {
        let mut state = lock(&state);
        state.targets.extend(targets);
        let count = state.seen.entry(operation.clone()).or_default();
        *count += 1;
        let count = *count;
        if let Some(recorded) = state.recorded.get_mut(&operation) {
            recorded.push(body.clone());
        }
        let injected = state.injected.get(&operation).copied().unwrap_or(0);
        let fault = state
            .rules
            .iter()
            .find(|rule| rule.operation == operation && (count - 1) % rule.every == 0 && injected < rule.limit)
            .map(|rule| rule.fault.clone());
        if fault.is_some() {
            *state.injected.entry(operation.clone()).or_default() += 1;
        }
        fault
    };
    let json_protocol = parts.headers.contains_key("x-amz-target");
    match &fault {
        Some(HttpFault::Status(status)) => {
            let body = if json_protocol {
                r#"{"__type":"InternalError","message":"injected by the fault proxy"}"#.to_owned()
            } else {
                "<Error><Code>InternalError</Code><Message>injected by the fault proxy</Message></Error>".to_owned()
            };
            return Ok(respond(*status, body));
        }
        Some(HttpFault::FirstBatchEntryFails) => {
            let mut request: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let entries = request["Entries"].as_array_mut().unwrap();
            let first = entries.remove(0);
            body = Bytes::from(serde_json::to_vec(&request).unwrap());
            let response = forward(&client, &upstream, &parts, body).await;
            let (head, response_body) = response.into_parts();
            let mut result: serde_json::Value = serde_json::from_slice(&response_body).unwrap_or_default();
            let failed = serde_json::json!({
                "Id": first["Id"], "SenderFault": false, "Code": "InternalError",
                "Message": "injected by the fault proxy",
            });
            match result["Failed"].as_array_mut() {
                Some(list) => list.push(failed),
                None => result["Failed"] = serde_json::json!([failed]),
            }
            let mut response = respond(head.status.as_u16(), serde_json::to_vec(&result).unwrap());
            *response.headers_mut() = head.headers;
            response.headers_mut().remove("content-length");
            return Ok(response);
        }
        _ => {}
    }
    if fault == Some(HttpFault::OkWithErrorBody) {
        return Ok(respond(
            200,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
             <Message>We encountered an internal error. Please try again.</Message></Error>",
        ));
    }
    let response = forward(&client, &upstream, &parts, body).await;
    let (head, body) = response.into_parts();
    let mut response = match fault {
        Some(HttpFault::Trickle { chunk, every }) => Response::builder()
            .status(head.status)
            .body(trickle(body, chunk, every))
            .unwrap(),
        _ => respond(head.status.as_u16(), body),
    };
    *response.headers_mut() = head.headers;
    Ok(response)
}

/// Sends the request on to the emulator and returns its whole response.
async fn forward(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: &str,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Response<Bytes> {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != "content-length" {
            request = request.header(name, value);
        }
    }
    let request = request
        .header("content-length", body.len())
        .body(Full::new(body))
        .unwrap();
    match client.request(request).await {
        Ok(response) => {
            let (head, body) = response.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Response::from_parts(head, body)
        }
        Err(err) => Response::builder()
            .status(502)
            .body(Bytes::from(format!("fault proxy could not reach the emulator: {err}")))
            .unwrap(),
    }
}
