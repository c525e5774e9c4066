//! The last hour of readings, as compact points for the dashboard's charts, and the test for
//! a ComfyUI whose memory keeps growing.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use super::sampler::Sample;

/// How far back the history goes.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// One point of every chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub at_ms: i64,
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub host_rss_bytes: u64,
    pub host_cpu_percent: f32,
    pub comfyui_pid: Option<u32>,
    pub comfyui_rss_bytes: Option<u64>,
    pub comfyui_cpu_percent: Option<f32>,
    /// Free space of the output volume.
    pub output_free_bytes: Option<u64>,
    /// First GPU.
    pub gpu_utilization_percent: Option<u32>,
    pub gpu_memory_used_bytes: Option<u64>,
}

impl Point {
    pub fn of(s: &Sample, output_free_bytes: Option<u64>) -> Self {
        let gpu = s.gpus.first();
        Self {
            at_ms: s.at_ms,
            cpu_percent: s.machine.cpu_percent,
            memory_used_bytes: s.machine.memory_used_bytes,
            host_rss_bytes: s.host.as_ref().map_or(0, |h| h.rss_bytes),
            host_cpu_percent: s.host.as_ref().map_or(0.0, |h| h.cpu_percent),
            comfyui_pid: s.comfyui.as_ref().map(|c| c.pid),
            comfyui_rss_bytes: s.comfyui.as_ref().map(|c| c.rss_bytes),
            comfyui_cpu_percent: s.comfyui.as_ref().map(|c| c.cpu_percent),
            output_free_bytes,
            gpu_utilization_percent: gpu.and_then(|g| g.utilization_percent),
            gpu_memory_used_bytes: gpu.and_then(|g| g.memory_used_bytes),
        }
    }
}

/// Points younger than [`WINDOW`].
#[derive(Debug, Default)]
pub struct History {
    points: VecDeque<Point>,
}

impl History {
    pub fn push(&mut self, p: Point) {
        let oldest = p.at_ms - WINDOW.as_millis() as i64;
        while self.points.front().is_some_and(|q| q.at_ms < oldest) {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    pub fn points(&self) -> Vec<Point> {
        self.points.iter().cloned().collect()
    }

    /// ComfyUI's memory over the current process's life, oldest first.
    pub fn comfyui_rss(&self) -> Vec<(i64, u64)> {
        let Some(pid) = self.points.back().and_then(|p| p.comfyui_pid) else {
            return Vec::new();
        };
        let mut out: Vec<(i64, u64)> = self
            .points
            .iter()
            .rev()
            .take_while(|p| p.comfyui_pid == Some(pid))
            .filter_map(|p| p.comfyui_rss_bytes.map(|r| (p.at_ms, r)))
            .collect();
        out.reverse();
        out
    }
}

/// Whether memory "keeps growing": over at least `min_span` and 10 readings, it rose by at
/// least 10 % and 64 MiB, and at least 80 % of the steps between readings went up or stayed.
/// A one-off jump (a model loaded) is not growth; a leak that climbs step by step is.
pub fn steady_growth(points: &[(i64, u64)], min_span: Duration) -> Option<GrowthReport> {
    let (first, last) = (points.first()?, points.last()?);
    let span_ms = last.0 - first.0;
    if points.len() < 10 || span_ms < min_span.as_millis() as i64 {
        return None;
    }
    let rise = last.1.saturating_sub(first.1);
    let ups = points.windows(2).filter(|w| w[1].1 >= w[0].1).count();
    let steady = ups * 5 >= (points.len() - 1) * 4;
    // A jump is most of the rise happening in one step.
    let biggest_step = points
        .windows(2)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .max()
        .unwrap_or(0);
    let gradual = biggest_step.saturating_mul(2) <= rise;
    (steady && gradual && rise >= 64 << 20 && rise.saturating_mul(10) >= first.1).then(|| {
        GrowthReport {
            from_bytes: first.1,
            to_bytes: last.1,
            over_s: u64::try_from(span_ms / 1000).unwrap_or(0),
            bytes_per_hour: u64::try_from(
                (u128::from(rise) * 3_600_000) / u128::try_from(span_ms.max(1)).unwrap_or(1),
            )
            .unwrap_or(u64::MAX),
        }
    })
}

/// What the ComfyUI page shows for a growing ComfyUI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrowthReport {
    pub from_bytes: u64,
    pub to_bytes: u64,
    pub over_s: u64,
    pub bytes_per_hour: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const MIN: Duration = Duration::from_secs(600);

    fn series(values: &[u64]) -> Vec<(i64, u64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 60_000, v * MIB))
            .collect()
    }

    #[test]
    fn a_leak_that_climbs_step_by_step_is_growth() {
        let leak: Vec<u64> = (0..20).map(|i| 2000 + i * 30).collect();
        let g = steady_growth(&series(&leak), MIN).unwrap();
        assert_eq!((g.from_bytes, g.to_bytes), (2000 * MIB, 2570 * MIB));
        assert_eq!(g.over_s, 19 * 60);
    }

    #[test]
    fn a_model_load_jump_and_a_flat_line_are_not() {
        let mut jump = vec![2000u64; 10];
        jump.extend(vec![8000u64; 10]);
        assert_eq!(steady_growth(&series(&jump), MIN), None);
        assert_eq!(steady_growth(&series(&[3000; 20]), MIN), None);
        // noisy but not growing
        let noisy: Vec<u64> = (0..20).map(|i| 3000 + (i % 3) * 40).collect();
        assert_eq!(steady_growth(&series(&noisy), MIN), None);
        // too short to tell
        let leak: Vec<u64> = (0..5).map(|i| 2000 + i * 200).collect();
        assert_eq!(steady_growth(&series(&leak), MIN), None);
    }

    #[test]
    fn history_keeps_an_hour_and_follows_one_comfyui_process() {
        let mut h = History::default();
        let p = |at_ms: i64, pid: u32, rss: u64| Point {
            at_ms,
            cpu_percent: 0.0,
            memory_used_bytes: 0,
            host_rss_bytes: 0,
            host_cpu_percent: 0.0,
            comfyui_pid: Some(pid),
            comfyui_rss_bytes: Some(rss),
            comfyui_cpu_percent: None,
            output_free_bytes: None,
            gpu_utilization_percent: None,
            gpu_memory_used_bytes: None,
        };
        h.push(p(0, 1, 10));
        h.push(p(1_000, 1, 11));
        h.push(p(2_000, 2, 5));
        h.push(p(3_000, 2, 6));
        assert_eq!(h.comfyui_rss(), vec![(2_000, 5), (3_000, 6)]);
        h.push(p(3_602_500, 2, 7));
        assert_eq!(h.points().len(), 2, "points older than an hour are dropped");
    }
}
