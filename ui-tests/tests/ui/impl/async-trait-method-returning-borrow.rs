pub struct Request(String);

pub trait Router {
    #[allow(async_fn_in_trait)]
    async fn route(&self, req: &Request) -> &str;
}

pub struct Table(String);

#[dsu::updateable]
impl Router for Table {
    async fn route(&self, req: &Request) -> &str {
        if req.0.is_empty() { "" } else { &self.0 }
    }
}

fn main() {}
