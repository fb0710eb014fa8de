//! C exports of the `filters` samplers.
