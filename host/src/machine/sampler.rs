//! One reading of the machine with `sysinfo`: CPU, memory and load, the host process, the
//! supervised ComfyUI process tree, the watched volumes, and the GPUs through NVML.

use std::collections::HashMap;

use comfyhost_gpu::nvml::{GpuLiveStats, NvmlSession};
use serde::Serialize;
use sysinfo::{Disks, Pid, Process, ProcessRefreshKind, ProcessesToUpdate, System};

use super::volumes::{VolumeUsage, Watched, usage};

/// The whole machine.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MachineStats {
    pub cpus: usize,
    /// Busy share of all CPUs since the previous sample, 0–100.
    pub cpu_percent: f32,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub memory_used_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    /// 1, 5 and 15 minute load averages.
    pub load_average: [f64; 3],
    pub uptime_s: u64,
}

/// A process, or a process tree summed up.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessStats {
    /// The (root) process.
    pub pid: u32,
    /// Processes counted (1 for the host; ComfyUI and its children).
    pub processes: usize,
    /// Resident memory.
    pub rss_bytes: u64,
    /// CPU time since the previous sample as a share of one CPU (200 = two CPUs busy).
    pub cpu_percent: f32,
    pub threads: usize,
    /// Since the (root) process started.
    pub uptime_s: u64,
}

/// One reading.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_ms: i64,
    pub machine: MachineStats,
    pub host: Option<ProcessStats>,
    /// The supervised ComfyUI and its children (`None` when it does not run or is attached).
    pub comfyui: Option<ProcessStats>,
    pub volumes: Vec<VolumeUsage>,
    pub gpus: Vec<GpuLiveStats>,
    /// Why GPU values are missing on a machine that has GPUs.
    pub gpu_error: Option<String>,
}

/// Keeps `sysinfo`'s state between readings (CPU percentages are differences).
pub struct Sampler {
    sys: System,
    disks: Disks,
    host_pid: Pid,
    nvml: Option<NvmlSession>,
    gpu_error: Option<String>,
}

impl Sampler {
    /// `gpus`: whether GPU detection found NVIDIA GPUs (NVML is opened only then).
    pub fn new(gpus: bool) -> anyhow::Result<Self> {
        let sys = System::new().map_err(|e| anyhow::anyhow!("sysinfo: {e}"))?;
        let disks =
            Disks::new_with_refreshed_list().map_err(|e| anyhow::anyhow!("sysinfo: {e}"))?;
        let host_pid = sysinfo::get_current_pid().map_err(|e| anyhow::anyhow!("sysinfo: {e}"))?;
        let (nvml, gpu_error) = if gpus {
            match NvmlSession::open(None) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(format!("NVML: {e}"))),
            }
        } else {
            (None, None)
        };
        Ok(Self {
            sys,
            disks,
            host_pid,
            nvml,
            gpu_error,
        })
    }

    /// Reads everything once. Blocking (a few ms): call from `spawn_blocking`.
    pub fn sample(&mut self, comfy_pid: Option<u32>, watched: &[Watched]) -> Sample {
        self.sys.refresh_memory();
        self.sys.refresh_cpu_usage();
        // Every process's parent (no per-process details, no threads), to find ComfyUI's tree.
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().without_tasks(),
        );
        let tree = comfy_pid
            .map(|p| descendants(self.sys.processes(), Pid::from_u32(p)))
            .unwrap_or_default();
        let mut pids = tree.clone();
        pids.push(self.host_pid);
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            false,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_tasks(),
        );
        self.disks.refresh(true);
        let load = System::load_average().unwrap_or(sysinfo::LoadAvg {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        });
        let machine = MachineStats {
            cpus: self.sys.cpus().len(),
            cpu_percent: self.sys.global_cpu_usage(),
            memory_total_bytes: self.sys.total_memory(),
            memory_available_bytes: self.sys.available_memory(),
            memory_used_bytes: self.sys.used_memory(),
            swap_total_bytes: self.sys.total_swap(),
            swap_used_bytes: self.sys.used_swap(),
            load_average: [load.one, load.five, load.fifteen],
            uptime_s: System::uptime().unwrap_or(0),
        };
        let host = self
            .sys
            .process(self.host_pid)
            .map(|p| sum(self.host_pid, [p]));
        let comfyui = tree.first().copied().and_then(|root| {
            let procs: Vec<&Process> = tree.iter().filter_map(|p| self.sys.process(*p)).collect();
            (!procs.is_empty()).then(|| sum(root, procs))
        });
        let (gpus, gpu_error) = match &self.nvml {
            Some(s) => match s.sample() {
                Ok(g) => (g, None),
                Err(e) => (Vec::new(), Some(format!("NVML: {e}"))),
            },
            None => (Vec::new(), self.gpu_error.clone()),
        };
        Sample {
            at_ms: crate::jobs::now_ms(),
            machine,
            host,
            comfyui,
            volumes: usage(&self.disks, watched),
            gpus,
            gpu_error,
        }
    }
}

/// `root` and every process below it (root first); empty when `root` is gone.
pub fn descendants(processes: &HashMap<Pid, Process>, root: Pid) -> Vec<Pid> {
    if !processes.contains_key(&root) {
        return Vec::new();
    }
    let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
    for (pid, p) in processes {
        // Threads show up as processes when tasks are listed; they are counted as threads.
        if p.thread_kind().is_some() {
            continue;
        }
        if let Some(parent) = p.parent() {
            children.entry(parent).or_default().push(*pid);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            for p in c {
                if !out.contains(p) {
                    out.push(*p);
                }
            }
        }
        i += 1;
    }
    out
}

fn sum<'a>(root: Pid, procs: impl IntoIterator<Item = &'a Process>) -> ProcessStats {
    let mut s = ProcessStats {
        pid: root.as_u32(),
        ..ProcessStats::default()
    };
    for p in procs {
        s.processes += 1;
        s.rss_bytes += p.memory();
        s.cpu_percent += p.cpu_usage();
        s.threads += p.tasks().map_or(1, |t| t.len().max(1));
        if p.pid() == root {
            s.uptime_s = p.run_time();
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_child_process_is_counted_in_the_tree() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id();
        let mut s = Sampler::new(false).unwrap();
        // The test process plays ComfyUI here: its tree contains the `sleep` child.
        let first = s.sample(Some(me), &[]);
        let second = s.sample(Some(me), &[]);
        let _ = child.kill();
        let _ = child.wait();
        for sample in [&first, &second] {
            let tree = sample.comfyui.as_ref().unwrap();
            assert_eq!(tree.pid, me);
            assert!(tree.processes >= 2, "{tree:?}");
            assert!(tree.rss_bytes > 0 && tree.threads >= 2, "{tree:?}");
            let host = sample.host.as_ref().unwrap();
            assert!(host.rss_bytes > 0 && host.threads >= 1, "{host:?}");
        }
        assert!(second.machine.memory_total_bytes > 0);
        assert!(second.machine.cpus > 0);
        assert!(second.gpus.is_empty() && second.gpu_error.is_none());
    }

    #[test]
    fn a_gone_root_has_no_tree() {
        let mut s = Sampler::new(false).unwrap();
        let sample = s.sample(Some(u32::MAX - 7), &[]);
        assert!(sample.comfyui.is_none());
    }
}
