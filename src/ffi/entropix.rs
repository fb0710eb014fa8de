//! C exports of the `entropix` samplers.
