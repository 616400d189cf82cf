//! BMC clients that several interfaces share: [`ipmitool`] (power, management) and
//! [`redfish`] (power, management, virtual media).

pub mod ipmitool;
pub mod redfish;
