//! C exports of the `mirostat` samplers.
