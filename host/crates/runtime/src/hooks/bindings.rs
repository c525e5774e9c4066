//! Generated bindings, one `bindgen!` per hook world.
//!
//! The `host` and `types` interfaces are generated once (in [`queue_router`]) and shared by the
//! other worlds through `with:`, so the host implements the `host` imports a single time and the
//! shared records (`workflow`, `submission`, `plugin-error`) are one Rust type everywhere.

#![allow(missing_docs, clippy::all)]

/// `queue-router-plugin` world; owns the shared `host` and `types` bindings.
pub mod queue_router {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "queue-router-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

/// `prompt-transform-plugin` world.
pub mod prompt_transform {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "prompt-transform-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "comfyhost:plugin/host": super::queue_router::comfyhost::plugin::host,
            "comfyhost:plugin/types": super::queue_router::comfyhost::plugin::types,
        },
    });
}

/// `status-overlay-plugin` world.
pub mod status_overlay {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "status-overlay-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "comfyhost:plugin/host": super::queue_router::comfyhost::plugin::host,
            "comfyhost:plugin/types": super::queue_router::comfyhost::plugin::types,
        },
    });
}

/// `preset-resolver-plugin` world.
pub mod preset_resolver {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "preset-resolver-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "comfyhost:plugin/host": super::queue_router::comfyhost::plugin::host,
            "comfyhost:plugin/types": super::queue_router::comfyhost::plugin::types,
        },
    });
}

/// `output-sync-plugin` world.
pub mod output_sync {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "output-sync-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "comfyhost:plugin/host": super::queue_router::comfyhost::plugin::host,
            "comfyhost:plugin/types": super::queue_router::comfyhost::plugin::types,
        },
    });
}

/// `output-sync-mirror-plugin` world: `output-sync` plus `output-mirror`.
pub mod output_sync_mirror {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "output-sync-mirror-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "comfyhost:plugin/host": super::queue_router::comfyhost::plugin::host,
            "comfyhost:plugin/types": super::queue_router::comfyhost::plugin::types,
        },
    });
}

/// The shared `host` import interface.
pub use queue_router::comfyhost::plugin::host as host_api;
/// The shared `types` interface.
pub use queue_router::comfyhost::plugin::types as wit_types;
