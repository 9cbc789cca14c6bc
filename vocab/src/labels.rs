//! The shape every closed set of names here shares.

/// An enum of names as they go on the wire, in config and in metric labels:
/// the enum (`u8`, in declaration order), `ALL` and `NAMES` in that order,
/// `index()`, `as_str()` and `from_name()` (exact names only).
#[macro_export]
macro_rules! labels {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in `index()` order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];
            /// `ALL`'s names, for lists in messages, config defaults and CLIs.
            pub const NAMES: [&'static str; [$($text),+].len()] = [$($text),+];

            pub const fn index(self) -> usize {
                self as usize
            }

            pub const fn as_str(self) -> &'static str {
                Self::NAMES[self.index()]
            }

            /// The value of an exact name; `None` for anything else.
            pub fn from_name(name: &str) -> Option<$name> {
                Self::ALL.into_iter().find(|v| v.as_str() == name)
            }
        }
    };
}
