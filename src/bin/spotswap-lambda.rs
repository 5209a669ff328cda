//! The `spotswap-lambda` function: a thin shell around [`spotswap::lambda`]. It reads the
//! settings and the AWS configuration once per container, then hands every invocation to the
//! library, which logs through `tracing` (JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`); this shell
//! adds the pass's metrics in CloudWatch embedded metric format and the interruption outcome.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn, tracing};
use serde_json::Value;
use spotswap::cache::ReadCache;
use spotswap::cloud::aws::{AwsAccount, load_config};
use spotswap::interrupt::Outcome;
use spotswap::lambda::{Handled, handle, interruption_metrics, pass_metrics, settings_from_env};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Honours AWS_LAMBDA_LOG_FORMAT (JSON or text) and AWS_LAMBDA_LOG_LEVEL.
    tracing::init_default_subscriber();
    // Bad settings fail the function's initialisation, with every problem named: as a log
    // record first (JSON with AWS_LAMBDA_LOG_FORMAT=JSON), then as the process's error.
    let settings = match settings_from_env() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "invalid settings: fix the stack parameter named");
            return Err(Error::from(e));
        }
    };
    let account = AwsAccount::new(load_config(None, None, settings.timeouts).await);
    // Kept for the container's life: a warm invocation reuses instance types, offerings and
    // on-demand prices for `cache-hours`.
    let cache = Arc::new(ReadCache::new(settings.cache_hours));
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "spotswap".into());
    let (account, settings, function, cache) = (&account, &settings, &function, &cache);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = UNIX_EPOCH + Duration::from_millis(event.context.deadline);
        // A deadline already passed leaves no time at all, not an unlimited pass.
        let time_left = Some(
            deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        );
        match handle(
            account,
            settings,
            &event.payload,
            chrono::Utc::now(),
            time_left,
            Some(cache),
        )
        .await
        {
            Ok(handled) => {
                match &handled {
                    // The pass logged its own summary ("pass done"). An EMF line must reach
                    // stdout as it is, not inside a log record.
                    Handled::Pass(report) => println!("{}", pass_metrics(report, function)),
                    Handled::Interruption(r) => match &r.outcome {
                        Outcome::Ignored { reason } => tracing::info!(
                            region = %r.region,
                            instance = %r.instance_id,
                            signal = r.signal,
                            "ignored: {reason}"
                        ),
                        Outcome::Replaced {
                            group,
                            action,
                            pool,
                            dry_run,
                        } => tracing::info!(
                            region = %r.region,
                            instance = %r.instance_id,
                            signal = r.signal,
                            group = %group,
                            action = ?action,
                            pool = ?pool,
                            dry_run,
                            "replacement requested"
                        ),
                        Outcome::Failed { group, error } => tracing::error!(
                            region = %r.region,
                            instance = %r.instance_id,
                            signal = r.signal,
                            group = %group,
                            "replacement failed: {error}"
                        ),
                    },
                }
                if let Handled::Interruption(r) = &handled {
                    println!("{}", interruption_metrics(r, function, chrono::Utc::now()));
                }
                Ok::<Value, Diagnostic>(handled.to_json())
            }
            Err(e) => {
                tracing::error!("{e}");
                Err(Diagnostic {
                    error_type: e.kind().to_string(),
                    error_message: e.to_string(),
                })
            }
        }
    }))
    .await
}
