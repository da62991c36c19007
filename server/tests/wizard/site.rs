//! The bakery's website for the crawl the dashboard follows: two pages on
//! 127.0.0.1:0, answered one request per connection, everything else 404
//! (robots.txt and sitemap.xml included: all allowed, links followed).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HOME: &str = "<!doctype html><html lang=fr><head><meta charset=utf-8>\
    <title>Boulangerie Martin</title></head><body><nav><a href=\"/horaires\">Horaires</a></nav>\
    <main><h1>Boulangerie Martin, pains au levain à Nantes</h1>\
    <p>Pains au levain naturel, viennoiseries pur beurre et pâtisseries de saison, \
    cuits chaque matin dans notre fournil du quartier Saint-Félix.</p>\
    <p>Commandes de gâteaux d'anniversaire et de pièces montées au moins 48 heures à l'avance.</p>\
    </main></body></html>";

const HOURS: &str = "<!doctype html><html lang=fr><head><meta charset=utf-8>\
    <title>Horaires – Boulangerie Martin</title></head><body><main>\
    <h1>Horaires d'ouverture</h1><table><tr><th>Jour</th><th>Heures</th></tr>\
    <tr><td>Mardi à vendredi</td><td>7h00 – 19h30</td></tr>\
    <tr><td>Samedi</td><td>7h00 – 13h00</td></tr>\
    <tr><td>Dimanche et lundi</td><td>Fermé</td></tr></table>\
    <p>Fermeture annuelle les trois premières semaines d'août.</p></main></body></html>";

pub struct Site {
    pub addr: SocketAddr,
}

impl Site {
    pub async fn start() -> Site {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the site");
        let addr = listener.local_addr().expect("site address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request);
                    let path = head.split(' ').nth(1).unwrap_or("/");
                    let (status, body) = match path {
                        "/" => ("200 OK", HOME),
                        "/horaires" => ("200 OK", HOURS),
                        _ => ("404 Not Found", "<!doctype html><title>Introuvable</title>"),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Site { addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}
