//! `fake-hardware`: interfaces that touch nothing, for tests and trying the API out.

use async_trait::async_trait;
use rivet_common::field::Field;
use rivet_common::steps::{Step, StepType, args_info};
use serde_json::{Value, json};

use super::{
    Boot, Deploy, DriverError, Inspect, InspectStart, Interface, Management, Power, StepOutcome, Task, Vendor,
    VendorMethod,
};
use crate::model::NodeRecord;

/// A `no-*` implementation: validation says the interface is unsupported.
#[derive(Debug)]
pub struct NoInterface {
    /// Interface kind.
    pub kind: &'static str,
    /// `no-bios`, ...
    pub name: &'static str,
}

#[async_trait]
impl Interface for NoInterface {
    fn name(&self) -> &'static str {
        self.name
    }
    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        Err(DriverError::Unsupported(format!(
            "Driver {} does not support {} (disabled or not implemented).",
            node.driver, self.kind
        )))
    }
}

#[async_trait]
impl Vendor for NoInterface {}

#[async_trait]
impl Inspect for NoInterface {
    async fn inspect_hardware(&self, task: &mut Task) -> Result<InspectStart, DriverError> {
        self.validate(&task.node).await?;
        Ok(InspectStart::Done(None))
    }
}

/// `fake` inspection: done at once, nothing learnt (as Ironic's `fake`).
#[async_trait]
impl Inspect for FakeInterface {
    async fn inspect_hardware(&self, _task: &mut Task) -> Result<InspectStart, DriverError> {
        Ok(InspectStart::Done(None))
    }
}

/// A fake interface with no steps.
#[derive(Debug)]
pub struct FakeInterface {
    /// `fake` or `noop`.
    pub name: &'static str,
}

#[async_trait]
impl Interface for FakeInterface {
    fn name(&self) -> &'static str {
        self.name
    }
}

#[async_trait]
impl Boot for FakeInterface {}

/// Stores the requested power state.
#[derive(Debug)]
pub struct FakePower;

#[async_trait]
impl Interface for FakePower {
    fn name(&self) -> &'static str {
        "fake"
    }
}

#[async_trait]
impl Power for FakePower {
    async fn get_power_state(&self, node: &NodeRecord) -> Result<String, DriverError> {
        Ok(node.power_state.clone().unwrap_or_else(|| "power off".into()))
    }

    async fn set_power_state(&self, node: &mut NodeRecord, target: &str) -> Result<(), DriverError> {
        node.power_state = Some(super::power_state_after(target).to_owned());
        Ok(())
    }

    fn supported_power_states(&self) -> Vec<&'static str> {
        vec!["power on", "power off", "rebooting", "soft power off", "soft rebooting"]
    }
}

/// Accepts boot devices and remembers the last one.
#[derive(Debug)]
pub struct FakeManagement;

#[async_trait]
impl Interface for FakeManagement {
    fn name(&self) -> &'static str {
        "fake"
    }
}

#[async_trait]
impl Management for FakeManagement {
    /// Checks the device and remembers nothing, as Ironic's fake does.
    async fn set_boot_device(
        &self,
        _node: &mut NodeRecord,
        device: &str,
        _persistent: bool,
    ) -> Result<(), DriverError> {
        if !self.supported_boot_devices().contains(&device) {
            return Err(DriverError::Invalid(format!("Invalid boot device {device} specified.")));
        }
        Ok(())
    }

    fn supported_boot_devices(&self) -> Vec<&'static str> {
        vec!["pxe", "disk", "cdrom", "bios", "safe"]
    }

    /// PXE, not persistent, whatever was set (Ironic's fake answers the same).
    async fn get_boot_device(&self, _node: &NodeRecord) -> Result<(Option<String>, Option<bool>), DriverError> {
        Ok((Some("pxe".into()), Some(false)))
    }
}

fn step(name: &str, interface: &str, priority: i64, args: Option<(&str, &str, bool)>) -> Step {
    Step {
        step: name.into(),
        priority: Some(priority),
        interface: interface.into(),
        abortable: Some(false),
        argsinfo: match args {
            Some(row) => Field::Value(args_info(&[row])),
            None => Field::Null,
        },
        requires_ramdisk: Some(false),
        ..Default::default()
    }
}

/// Deploys instantly: the core `deploy` step (priority 100) powers the node on.
#[derive(Debug)]
pub struct FakeDeploy;

#[async_trait]
impl Interface for FakeDeploy {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn steps(&self, flow: StepType) -> Vec<Step> {
        match flow {
            StepType::Deploy => {
                let mut s = step("deploy", "deploy", 100, None);
                s.abortable = Some(true);
                s.requires_ramdisk = None;
                vec![s]
            }
            _ => Vec::new(),
        }
    }
    async fn execute_step(&self, task: &mut Task, step: &Step) -> Result<StepOutcome, DriverError> {
        match step.step.as_str() {
            "deploy" => {
                task.node.power_state = Some("power on".into());
                Ok(StepOutcome::Done)
            }
            other => Err(DriverError::Unsupported(format!("fake deploy has no step {other}"))),
        }
    }
}

#[async_trait]
impl Deploy for FakeDeploy {}

/// BIOS steps that only record what they were asked.
#[derive(Debug)]
pub struct FakeBios;

#[async_trait]
impl Interface for FakeBios {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn steps(&self, flow: StepType) -> Vec<Step> {
        match flow {
            StepType::Clean | StepType::Service => vec![
                step(
                    "apply_configuration",
                    "bios",
                    0,
                    Some(("settings", "A list of BIOS settings to be applied", true)),
                ),
                step("factory_reset", "bios", 0, None),
            ],
            StepType::Deploy => vec![step(
                "apply_configuration",
                "bios",
                0,
                Some(("settings", "A list of BIOS settings to be applied", true)),
            )],
        }
    }
    async fn execute_step(&self, task: &mut Task, step: &Step) -> Result<StepOutcome, DriverError> {
        let args = step.args.clone().unwrap_or_default();
        task.node
            .driver_internal_info
            .insert(format!("fake_bios_{}", step.step), Value::Object(args));
        Ok(StepOutcome::Done)
    }
}

/// RAID steps that only record what they were asked.
#[derive(Debug)]
pub struct FakeRaid;

#[async_trait]
impl Interface for FakeRaid {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn steps(&self, flow: StepType) -> Vec<Step> {
        match flow {
            StepType::Clean => vec![
                step("create_configuration", "raid", 0, None),
                step("delete_configuration", "raid", 0, None),
            ],
            _ => Vec::new(),
        }
    }
    async fn execute_step(&self, task: &mut Task, step: &Step) -> Result<StepOutcome, DriverError> {
        task.node.attrs.insert(
            "raid_config".into(),
            if step.step == "delete_configuration" {
                json!({})
            } else {
                json!({"logical_disks": []})
            },
        );
        Ok(StepOutcome::Done)
    }
}

/// Vendor passthru methods for tests, like upstream's fake vendor interfaces.
#[derive(Debug)]
pub struct FakeVendor;

#[async_trait]
impl Interface for FakeVendor {
    fn name(&self) -> &'static str {
        "fake"
    }
}

#[async_trait]
impl Vendor for FakeVendor {
    fn methods(&self) -> Vec<VendorMethod> {
        vec![
            VendorMethod {
                name: "first_method",
                http_methods: &["POST"],
                is_async: true,
                description: "Records its arguments in driver_internal_info.",
                attach: false,
                require_exclusive_lock: true,
            },
            VendorMethod {
                name: "second_method",
                http_methods: &["GET", "POST"],
                is_async: false,
                description: "Echoes its arguments.",
                attach: false,
                require_exclusive_lock: false,
            },
        ]
    }

    fn driver_methods(&self) -> Vec<VendorMethod> {
        vec![VendorMethod {
            name: "driver_method",
            http_methods: &["GET", "POST"],
            is_async: false,
            description: "Echoes its arguments at driver level.",
            attach: false,
            require_exclusive_lock: false,
        }]
    }

    async fn call(
        &self,
        node: &mut NodeRecord,
        method: &str,
        http_method: &str,
        body: Value,
    ) -> Result<Value, DriverError> {
        match method {
            "first_method" => {
                node.driver_internal_info
                    .insert("fake_vendor_first_method".into(), body);
                Ok(Value::Null)
            }
            "second_method" => Ok(json!({"method": method, "http_method": http_method, "args": body})),
            other => Err(DriverError::Invalid(format!("No handler for method {other}"))),
        }
    }

    async fn call_driver(&self, method: &str, http_method: &str, body: Value) -> Result<Value, DriverError> {
        match method {
            "driver_method" => Ok(json!({"method": method, "http_method": http_method, "args": body})),
            other => Err(DriverError::Invalid(format!("No handler for method {other}"))),
        }
    }
}
