//! The export macros, one per hook world.
//!
//! Each wraps the macro wit-bindgen generated for the world. Inside the sandbox build
//! (`target_arch = "wasm32"`) it emits the component exports and the world's type metadata. In a
//! native build it only checks that the type implements the hook trait: native exports are
//! useless, and their WIT names (`comfyhost:plugin/queue-router@0.1.0#route`) are not valid
//! symbols for a native `cdylib`, so skipping them lets a plugin crate keep
//! `crate-type = ["cdylib", "rlib"]` and run `cargo test`.

/// Export a [`QueueRouter`](crate::hooks::QueueRouter) implementation:
/// `comfyhost_sdk::export_queue_router!(MyRouter);`
#[macro_export]
macro_rules! export_queue_router {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::queue_router::export_queue_router!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::export::assert_queue_router::<$ty>();
    };
}

/// Export a [`PromptTransform`](crate::hooks::PromptTransform) implementation:
/// `comfyhost_sdk::export_prompt_transform!(MyTransform);`
#[macro_export]
macro_rules! export_prompt_transform {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::prompt_transform::export_prompt_transform!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::export::assert_prompt_transform::<$ty>();
    };
}

/// Export a [`StatusOverlay`](crate::hooks::StatusOverlay) implementation:
/// `comfyhost_sdk::export_status_overlay!(MyOverlay);`
#[macro_export]
macro_rules! export_status_overlay {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::status_overlay::export_status_overlay!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::export::assert_status_overlay::<$ty>();
    };
}

/// Export a [`PresetResolver`](crate::hooks::PresetResolver) implementation:
/// `comfyhost_sdk::export_preset_resolver!(MyResolver);`
#[macro_export]
macro_rules! export_preset_resolver {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::preset_resolver::export_preset_resolver!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::export::assert_preset_resolver::<$ty>();
    };
}

/// Export an [`OutputSync`](crate::hooks::OutputSync) implementation:
/// `comfyhost_sdk::export_output_sync!(MySync);`
#[macro_export]
macro_rules! export_output_sync {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::output_sync::export_output_sync!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::export::assert_output_sync::<$ty>();
    };
}

/// Export an output-sync plugin that also mirrors deletions (world
/// `output-sync-mirror-plugin`): `$ty` implements both [`OutputSync`](crate::hooks::OutputSync)
/// and [`OutputMirror`](crate::hooks::OutputMirror).
/// `comfyhost_sdk::export_output_sync_mirror!(MySync);`
#[macro_export]
macro_rules! export_output_sync_mirror {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::output_sync::export_output_sync!($ty);
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::output_mirror::export_output_mirror!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::export::assert_output_sync_mirror::<$ty>();
    };
}

/// Native-build check used by `export_queue_router!`.
#[doc(hidden)]
pub const fn assert_queue_router<T: crate::hooks::QueueRouter>() {}
/// Native-build check used by `export_prompt_transform!`.
#[doc(hidden)]
pub const fn assert_prompt_transform<T: crate::hooks::PromptTransform>() {}
/// Native-build check used by `export_status_overlay!`.
#[doc(hidden)]
pub const fn assert_status_overlay<T: crate::hooks::StatusOverlay>() {}
/// Native-build check used by `export_preset_resolver!`.
#[doc(hidden)]
pub const fn assert_preset_resolver<T: crate::hooks::PresetResolver>() {}
/// Native-build check used by `export_output_sync!`.
#[doc(hidden)]
pub const fn assert_output_sync<T: crate::hooks::OutputSync>() {}
/// Native-build check used by `export_output_sync_mirror!`.
#[doc(hidden)]
pub const fn assert_output_sync_mirror<T: crate::hooks::OutputSync + crate::hooks::OutputMirror>() {
}
