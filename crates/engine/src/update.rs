//! `update`: new resource limits for a container (docker update's, CRI
//! UpdateContainerResources'), applied to its cgroup while it runs and
//! kept in its record for its next start.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Container, ContainerConfig, Status};

/// What changes; None leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct ResourceUpdate {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub hugepages: Option<Vec<(String, u64)>>,
    pub unified: Option<BTreeMap<String, String>>,
}

impl ResourceUpdate {
    fn apply(&self, c: &mut ContainerConfig) {
        let x = &mut c.extra;
        set(&mut c.memory, &self.memory);
        set(&mut c.cpus, &self.cpus);
        set(&mut c.pids_limit, &self.pids_limit);
        set(&mut x.memory_swap, &self.memory_swap);
        set(&mut x.memory_reservation, &self.memory_reservation);
        set(&mut x.cpu_shares, &self.cpu_shares);
        set(&mut x.cpu_quota, &self.cpu_quota);
        set(&mut x.cpu_period, &self.cpu_period);
        set(&mut x.cpuset_cpus, &self.cpuset_cpus);
        set(&mut x.cpuset_mems, &self.cpuset_mems);
        if let Some(h) = &self.hugepages {
            x.hugepages = h.clone();
        }
        if let Some(u) = &self.unified {
            x.unified = u.clone();
        }
    }
}

fn set<T: Clone>(field: &mut Option<T>, new: &Option<T>) {
    if new.is_some() {
        *field = new.clone();
    }
}

impl Engine {
    /// Changes the container's resource limits: its cgroup now, if it
    /// runs, and its record.
    pub fn update_resources(&self, key: &str, u: &ResourceUpdate) -> Result<Container> {
        let c = self.container(key)?;
        let _lock = self.lock(&c.id)?;
        let mut c = self.refresh(self.db.find_container(&c.id)?)?;
        let mut config = c.config.clone();
        u.apply(&mut config);
        crate::lifecycle::check_config(&config)?;
        if let Some(m) = config.memory
            && m < 0
        {
            return Err(Error::invalid("memory", format!("{m} is negative")));
        }
        if matches!(c.state.status, Status::Running | Status::Paused) {
            let r = crate::spec::resources_of(&config);
            self.handler(&c)?.update(&c.id, &r)?;
        }
        c.config = config;
        self.db.update_container_spec(&mut c)?;
        crate::recover::save_container_file(self, &c)?;
        self.emit(self.container_event(&c, "update"));
        Ok(c)
    }
}
