//! gRPC statuses as kubelet reads them: NotFound for an unknown id,
//! InvalidArgument naming the field, AlreadyExists naming the existing
//! id, FailedPrecondition for a state that forbids the call.

use tonic::Status;

/// An engine error as a status: its kind decides the code, its text (which
/// names what was wrong) is the message.
pub fn from_engine(e: berth_engine::Error) -> Status {
    use berth_engine::Error as E;
    let msg = e.to_string();
    match e {
        E::NotFound(_) => Status::not_found(msg),
        E::Conflict(_) => Status::failed_precondition(msg),
        E::Invalid { .. } => Status::invalid_argument(msg),
        E::Image(i) => from_image(i),
        E::Unreadable { .. } | E::Damaged { .. } => Status::data_loss(msg),
        _ => Status::internal(msg),
    }
}

pub fn from_image(e: berth_image::Error) -> Status {
    use berth_image::Error as E;
    let msg = e.to_string();
    match e {
        E::NotFound(_) => Status::not_found(msg),
        E::Invalid { .. } | E::Reference { .. } => Status::invalid_argument(msg),
        E::Unsupported { .. } => Status::unimplemented(msg),
        E::Registry { .. } => Status::unavailable(msg),
        E::InUse { .. } => Status::failed_precondition(msg),
        _ => Status::unknown(msg),
    }
}

/// A request field that is missing or wrong.
pub fn invalid(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {why}"))
}

/// A required field that is empty.
pub fn required(field: &str) -> Status {
    invalid(field, "required")
}

/// A duplicate name: the message carries the id of what has it.
pub fn already_exists(what: &str, name: &str, id: &str) -> Status {
    Status::already_exists(format!("{what} name {name:?} is already reserved by {id}"))
}

/// NotFound and nothing else: the calls that are idempotent on what is
/// already gone.
pub fn is_not_found(s: &Status) -> bool {
    s.code() == tonic::Code::NotFound
}
