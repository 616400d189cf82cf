//! BMC clients that several interfaces share: [`ipmitool`] (power, management) and
//! [`redfish`] (power, management) with its [`virtual_media`].

pub mod ipmitool;
pub mod redfish;
pub mod virtual_media;
