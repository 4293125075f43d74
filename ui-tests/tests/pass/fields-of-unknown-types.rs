// A field of a type dsu has no fingerprint or transformer for (a socket, a channel, a type of
// another crate) needs none: the struct is fingerprinted through the field's name, layout and
// inner types, and an unchanged struct moves whole.

use dsu::Fingerprinted;
use std::sync::mpsc::{channel, Sender};

mod v1 {
    #[dsu::updateable]
    pub struct Event {
        pub id: u32,
    }
}

mod v2 {
    #[dsu::updateable]
    pub struct Event {
        pub id: u64,
    }
}

#[dsu::updateable]
pub struct Conn {
    pub socket: Option<std::net::TcpStream>,
    pub events: Sender<v1::Event>,
}

mod wider {
    #[dsu::updateable]
    pub struct Conn {
        pub socket: Option<std::net::TcpStream>,
        pub events: std::sync::mpsc::Sender<super::v2::Event>,
    }
}

fn main() {
    // `Sender<Event>` changes with `Event`.
    assert_ne!(Conn::FINGERPRINT, wider::Conn::FINGERPRINT);
    let (tx, rx) = channel();
    let conn = Conn { socket: None, events: tx };
    let mut old = std::mem::ManuallyDrop::new(conn);
    // SAFETY: committed at once: the old value is released and not used again.
    let moved = unsafe { <Conn as dsu::Transform<Conn>>::transform(&old) }.unwrap();
    // SAFETY: the move is kept.
    unsafe { <Conn as dsu::Transform<Conn>>::release_old(&mut *old) };
    moved.events.send(v1::Event { id: 7 }).unwrap();
    assert_eq!(rx.recv().unwrap().id, 7);
    assert!(moved.socket.is_none());
}
