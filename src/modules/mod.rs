//! Feature modules: each registers its phase handlers and filters at start-up.
