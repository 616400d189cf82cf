//! A hardware manager compiled into the agent (see docs/vendor-guide.md).
//!
//! Build your own agent binary that registers it:
//!
//! ```sh
//! cargo run -p rivet-agent --example vendor_manager -- --standalone --listen-host 127.0.0.1 --agent-token t
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use rivet_agent::config::Cli;
use rivet_agent::error::{AgentError, ErrorKind};
use rivet_agent::hardware::{HardwareManager, ManagerError, StepContext, SupportLevel};
use rivet_common::node::{Node, Port};
use rivet_common::steps::{ArgSpec, Step, StepType};
use serde_json::{Value, json};

/// Resets an imaginary Acme storage controller.
#[derive(Debug)]
pub struct AcmeControllerManager;

#[async_trait]
impl HardwareManager for AcmeControllerManager {
    fn class_name(&self) -> String {
        "AcmeControllerManager".into()
    }

    fn name(&self) -> String {
        "acme_controller".into()
    }

    fn version(&self) -> String {
        // Bump whenever the steps change: conductors restart cleaning on a mismatch.
        "2.0".into()
    }

    async fn evaluate_hardware_support(&self) -> SupportLevel {
        // A real manager looks for its PCI vendor id under /sys/bus/pci/devices.
        SupportLevel::SERVICE_PROVIDER
    }

    async fn get_steps(&self, step_type: StepType, _node: &Node, _ports: &[Port]) -> Result<Vec<Step>, ManagerError> {
        if step_type != StepType::Clean {
            return Ok(Vec::new());
        }
        Ok(vec![Step {
            step: "reset_controller".into(),
            priority: Some(0),
            interface: "raid".into(),
            reboot_requested: Some(false),
            abortable: Some(false),
            argsinfo: rivet_common::field::Field::Value(
                [(
                    "mode".to_owned(),
                    ArgSpec {
                        description: "quick or full".into(),
                        required: false,
                    },
                )]
                .into(),
            ),
            ..Default::default()
        }])
    }

    async fn execute(&self, name: &str, ctx: StepContext) -> Result<Value, ManagerError> {
        match name {
            "reset_controller" => {
                let mode = ctx.args.get("mode").and_then(Value::as_str).unwrap_or("quick");
                if !["quick", "full"].contains(&mode) {
                    return Err(ManagerError::Failed(AgentError::new(
                        ErrorKind::InvalidCommandParams,
                        format!("mode must be quick or full, got {mode}"),
                    )));
                }
                ctx.progress.report(format!("resetting controller ({mode})"));
                Ok(json!({ "reset": mode }))
            }
            // Anything else is not ours: the next manager is asked.
            _ => Err(ManagerError::NotImplemented),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_args(std::env::args_os())?;
    // The same sources as rivet-agent: config file, kernel command line, ramdisk marker.
    let config = rivet_agent::load_config(cli)?;
    tracing_subscriber::fmt().init();
    tokio::runtime::Runtime::new()?.block_on(async {
        let agent = rivet_agent::start_with(
            config,
            rivet_agent::default_registry(),
            vec![Arc::new(AcmeControllerManager)],
        )
        .await?;
        agent.wait().await?;
        Ok(())
    })
}
