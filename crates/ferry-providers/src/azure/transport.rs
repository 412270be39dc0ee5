//! object_store's HTTP (the listing, the container check, deletes) sent through the run's one
//! retry layer: object_store is built with its own retries off, and each request it makes is
//! sent here, retried by [`crate::retries::request`] (the run's pace, `Retry-After`, bounded
//! attempts and wait, each retry counted by cause) like every other request ferry sends.
//! What the layer gives up on is handed back to object_store as the service answered it, so
//! its errors read as before.

use crate::retries::{self, Failed};
use crate::{ProviderError, RunContext, class_of_status};
use ferry_core::{ErrorClass, FailureKind};
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Makes object_store's client: reqwest with ferry's timeouts, behind the retry layer.
#[derive(Debug)]
pub(super) struct Layered {
    pub run: Arc<RunContext>,
}

impl HttpConnector for Layered {
    fn connect(&self, _options: &object_store::ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| object_store::Error::Generic { store: "MicrosoftAzure", source: Box::new(e) })?;
        Ok(HttpClient::new(LayeredService { client, run: self.run.clone() }))
    }
}

#[derive(Debug)]
struct LayeredService {
    client: reqwest::Client,
    run: Arc<RunContext>,
}

/// The failure a transport error is, for the layer.
fn transport_failure(e: &HttpError) -> Failed {
    let (class, kind) = match e.kind() {
        HttpErrorKind::Timeout => (ErrorClass::Retryable, FailureKind::Timeout),
        HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Interrupted => (ErrorClass::Retryable, FailureKind::Connection),
        _ => (ErrorClass::PerObject, FailureKind::Other),
    };
    let detail = crate::error::chain(e);
    Failed::from(ProviderError::Request { provider: "azure", op: "request", key: String::new(), detail, class, kind })
}

#[async_trait::async_trait]
impl HttpService for LayeredService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        // The last answer or transport error, handed back as it is once the layer gives up.
        let last: Mutex<Option<Result<HttpResponse, HttpError>>> = Mutex::new(None);
        let sent = retries::request(&self.run, &retries::REQUEST, |_| {
            let mut req = http::Request::builder().method(parts.method.clone()).uri(parts.uri.clone()).version(parts.version);
            if let Some(headers) = req.headers_mut() {
                *headers = parts.headers.clone();
            }
            let req = req.body(body.clone());
            let last = &last;
            async move {
                let req = req.map_err(|e| Failed::from(ProviderError::Config { provider: "azure", detail: e.to_string() }))?;
                let (failed, answer) = match self.client.call(req).await {
                    Ok(resp) if class_of_status(resp.status().as_u16()) != ErrorClass::Retryable => return Ok(resp),
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let detail = format!("HTTP {status}");
                        let error = ProviderError::Request {
                            provider: "azure",
                            op: "request",
                            key: String::new(),
                            detail,
                            class: ErrorClass::Retryable,
                            kind: FailureKind::of_status(status),
                        };
                        (Failed { error, retry_after: retries::retry_after(resp.headers()) }, Ok(resp))
                    }
                    Err(e) => (transport_failure(&e), Err(e)),
                };
                *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
                Err(failed)
            }
        })
        .await;
        match sent {
            Ok(resp) => Ok(resp),
            Err(e) => {
                last.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_else(|| Err(HttpError::new(HttpErrorKind::Unknown, e)))
            }
        }
    }
}
