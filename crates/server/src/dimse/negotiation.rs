//! Association acceptance: which peers may associate (called AE title, configured node, address)
//! and which SCU/SCP roles a requestor may take (C-GET needs the requestor as Storage SCP).

use std::net::IpAddr;

use dicom_ul::association::server::{AccessControl, Negotiation};
use dicom_ul::pdu::{AssociationRJServiceUserReason, RequestorRoles, UserIdentity};
use yilian_config::Config;

use super::sop_classes;

/// The hub's acceptance policy for one incoming connection from `peer_ip`.
pub struct NodeAccess<'a> {
    pub config: &'a Config,
    pub peer_ip: IpAddr,
}

/// Why an association request is refused (the A-ASSOCIATE-RJ reason).
pub fn check(
    config: &Config,
    peer_ip: IpAddr,
    calling: &str,
    called: &str,
) -> Result<(), AssociationRJServiceUserReason> {
    if called.trim() != config.dicom.ae_title.trim() {
        return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
    }
    let Some(node) = config.dicom_node(calling) else {
        return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
    };
    if let Some(host) = &node.host {
        let allowed = host.parse::<IpAddr>().map(|ip| ip.to_canonical());
        if allowed != Ok(peer_ip.to_canonical()) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
    }
    Ok(())
}

impl AccessControl for NodeAccess<'_> {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let out = check(self.config, self.peer_ip, calling_ae_title, called_ae_title);
        if let Err(reason) = &out {
            // AE titles and the address identify machines, not patients.
            tracing::warn!(
                calling = calling_ae_title,
                called = called_ae_title,
                peer = %self.peer_ip,
                %reason,
                "association rejected (permanent)"
            );
        }
        out
    }
}

/// Role selection: a requestor may be Storage SCP (to receive C-GET sub-operations); for every
/// other SOP class the roles are left at their defaults (requestor SCU, hub SCP).
#[derive(Debug, Clone, Copy, Default)]
pub struct Roles;

impl Negotiation for Roles {
    fn negotiate_roles(
        &self,
        sop_class_uid: &str,
        scu_role: bool,
        scp_role: bool,
    ) -> Option<RequestorRoles> {
        let uid = sop_class_uid.trim_end_matches(['\0', ' ']);
        if sop_classes::is_storage(uid) {
            Some(RequestorRoles {
                scu: scu_role,
                scp: scp_role,
            })
        } else {
            // Answer the proposal, granting only the default role it asked for.
            Some(RequestorRoles {
                scu: scu_role,
                scp: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml(yilian_config::DEMO_TOML, "demo").unwrap()
    }

    #[test]
    fn acceptance_follows_the_node_list() {
        let c = config();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(check(&c, lo, "HX_DR01", "YILIAN"), Ok(()));
        assert_eq!(
            check(&c, other, "HX_DR01", "YILIAN"),
            Ok(()),
            "no host: any address"
        );
        assert_eq!(
            check(&c, lo, "HX_DR01", "OTHER"),
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
        assert_eq!(
            check(&c, lo, "NOBODY", "YILIAN"),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        // TCM_PACS is bound to 127.0.0.1.
        assert_eq!(check(&c, lo, "TCM_PACS", "YILIAN"), Ok(()));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(check(&c, mapped, "TCM_PACS", "YILIAN"), Ok(()));
        assert_eq!(
            check(&c, other, "TCM_PACS", "YILIAN"),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
    }

    #[test]
    fn storage_scp_role_is_granted_for_c_get() {
        let ct = "1.2.840.10008.5.1.4.1.1.2";
        let r = Roles.negotiate_roles(ct, false, true).unwrap();
        assert!(r.scp && !r.scu);
        let find = "1.2.840.10008.5.1.4.1.2.2.1";
        let r = Roles.negotiate_roles(find, true, true).unwrap();
        assert!(r.scu && !r.scp);
    }
}
