//! The fixture site: a small French hair salon served in-process on
//! 127.0.0.1:0, with every case the crawler must handle, and a log of the
//! requests it received (path, arrival, how many were in flight).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request the fixture received.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub at: Instant,
    /// Requests in flight when this one arrived, itself included.
    pub in_flight: usize,
    pub user_agent: String,
}

#[derive(Default)]
struct State {
    log: Vec<Logged>,
    in_flight: usize,
    /// `/occupee` and `/occupee-date` answered 429 once already.
    busy_once: bool,
    busy_date_once: bool,
}

pub struct Fixture {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

const FOOTER: &str = "<footer><h2>Salon Léa</h2><p>12 rue des Lilas, 69003 Lyon</p>\
    <p>Téléphone : 04 78 12 34 56</p><p>Du mardi au samedi, 9h – 19h</p></footer>";

const NAV: &str = "<header><nav><a href=\"/\">Accueil</a> <a href=\"/services\">Services</a> \
    <a href=\"/tarifs\">Tarifs</a> <a href=\"/horaires\">Horaires</a> <a href=\"/contact\">Contact</a></nav></header>\
    <div id=\"cookie-consent\">Ce site utilise des cookies. <button>Accepter</button></div>";

fn page(title: &str, main: &str) -> String {
    format!(
        "<!doctype html><html lang=fr><head><meta charset=utf-8><title>{title} – Salon Léa</title>\
         <style>body{{font-family:sans-serif}}</style><script>console.log('stats')</script></head>\
         <body>{NAV}<main>{main}</main>{FOOTER}</body></html>"
    )
}

const HOME: &str = "<h1>Salon Léa, coiffure à Lyon</h1>\
    <p>Salon de coiffure mixte au cœur du 3e arrondissement de Lyon depuis 2009. \
    Coupes, couleurs, balayages et soins, pour femmes, hommes et enfants.</p>\
    <ul><li><a href=\"/services\">Nos services</a></li><li><a href=\"/tarifs?utm_source=newsletter&utm_medium=email\">Nos tarifs</a></li>\
    <li><a href=\"/horaires\">Horaires</a></li><li><a href=\"/contact#plan\">Nous trouver</a></li>\
    <li><a href=\"/ancienne-page\">L'équipe (ancienne adresse)</a></li><li><a href=\"/boucle\">Promotions</a></li>\
    <li><a href=\"/vers-prive\">Espace pro</a></li><li><a href=\"/vers-nom-prive\">Intranet</a></li>\
    <li><a href=\"/absente\">Carte cadeau</a></li><li><a href=\"/erreur\">Boutique</a></li>\
    <li><a href=\"/occupee\">Réservation en ligne</a></li><li><a href=\"/noindex-page\">Mentions</a></li>\
    <li><a href=\"/accents\">Épilation</a></li><li><a href=\"/lent\">Blog</a></li><li><a href=\"/enorme\">Galerie</a></li><li><a href=\"/plaquette.pdf\">Plaquette PDF</a></li>\
    <li><a href=\"https://www.facebook.com/salonlea\">Facebook</a></li><li><a href=\"/prive/admin\">Admin</a></li>\
    <li><a href=\"/vers-admin\">Administration</a></li><li><a href=\"/x-robots\">Archives</a></li>\
    <li><a href=\"/occupee-date\">Offres</a></li><li><a href=\"/horaires-ete\">Horaires d'été</a></li>\
    <li><a href=\"/soins/\">Soins</a></li><li><a href=\"/titre-long\">Presse</a></li>\
    <li><a href=\"/adresse-longue\">Partenaires</a></li></ul>";

/// Short, with the page's script: content all the same.
const HORAIRES_ETE: &str =
    "<h1>Horaires d'été</h1><table><tr><td>Juillet</td><td>9h – 13h</td></tr>\
    <tr><td>Août</td><td>Fermé</td></tr></table>";

const OFFRES: &str = "<h1>Nos offres</h1><p>Le mardi, une coupe achetée, un soin offert. \
    Offre valable jusqu'au 31 décembre, non cumulable.</p>";

const SERVICES: &str = "<h1>Nos services</h1><h2>Coupes</h2><p>Coupe femme, coupe homme et coupe enfant, \
    shampooing et coiffage compris. Barbe taillée à la tondeuse ou au ciseau.</p>\
    <h2>Couleurs</h2><p>Coloration, mèches, balayage, ombré hair. Diagnostic offert avant toute couleur.</p>\
    <h2>Soins</h2><p>Soin profond à la kératine, massage du cuir chevelu. Produits bio sans sulfates.</p>";

const TARIFS: &str = "<h1>Tarifs</h1><p>Prix TTC, shampooing compris.</p>\
    <table><thead><tr><th>Prestation</th><th>Prix</th></tr></thead><tbody>\
    <tr><td>Coupe femme</td><td>38 €</td></tr><tr><td>Coupe homme</td><td>25 €</td></tr>\
    <tr><td>Coupe enfant (moins de 12 ans)</td><td>15 €</td></tr><tr><td>Couleur</td><td>à partir de 45 €</td></tr>\
    <tr><td>Balayage</td><td>à partir de 70 €</td></tr><tr><td>Barbe</td><td>12 €</td></tr></tbody></table>\
    <h2>Moyens de paiement</h2><p>Carte bancaire, espèces et chèques. Pas de paiement en ligne.</p>";

const HORAIRES: &str = "<h1>Horaires d'ouverture</h1>\
    <table><tr><th>Jour</th><th>Heures</th></tr><tr><td>Lundi</td><td>Fermé</td></tr>\
    <tr><td>Mardi – Vendredi</td><td>9h00 – 19h00</td></tr><tr><td>Samedi</td><td>8h30 – 17h00</td></tr>\
    <tr><td>Dimanche</td><td>Fermé</td></tr></table><p>Fermeture annuelle la première quinzaine d'août.</p>";

const CONTACT: &str = "<h1>Contact et accès</h1><p>Adresse : 12 rue des Lilas, 69003 Lyon, à deux minutes du métro Saxe-Gambetta.</p>\
    <p>Parking : stationnement gratuit place Voltaire, juste en face.</p>\
    <p>Téléphone : 04 78 12 34 56. Email : bonjour@salon-lea.fr</p>\
    <h2>Rendez-vous</h2><p>Prenez rendez-vous par téléphone ou au salon. Merci de prévenir 24 heures avant pour toute annulation.</p>";

const EQUIPE: &str = "<h1>L'équipe</h1><p>Léa, fondatrice et coloriste, formée chez les plus grands. \
    Karim, barbier et spécialiste des coupes homme. Julie, apprentie, vous accueille le samedi.</p>";

const OCCUPEE: &str = "<h1>Réservation en ligne</h1><p>La réservation en ligne arrive bientôt. \
    En attendant, appelez-nous pour prendre rendez-vous : nous répondons du mardi au samedi.</p>";

const NOINDEX: &str = "<!doctype html><html><head><meta name=robots content=\"noindex, follow\"><title>Mentions</title></head>\
    <body><main><h1>Mentions légales</h1><p>Salon Léa SARL, capital 5 000 €, RCS Lyon 123 456 789. Hébergeur : un hébergeur.</p></main></body></html>";

const JS_SHELL: &str =
    "<!doctype html><html><head><title>Salon</title><script src=\"/app.js\"></script></head>\
    <body><div id=\"root\"></div><noscript>Activez JavaScript</noscript></body></html>";

fn windows_1252_page() -> Vec<u8> {
    let html = page(
        "Épilation",
        "<h1>Épilation</h1><p>Épilation à la cire tiède – sourcils, lèvre, visage complet. \
         Prix réduits le mercredi pour les étudiantes.</p>",
    );
    encoding_rs::WINDOWS_1252.encode(&html).0.into_owned()
}

impl Fixture {
    /// Serves the salon; `js_only`: every page is an empty JavaScript shell.
    pub async fn start(js_only: bool) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fixture");
        let addr = listener.local_addr().expect("fixture address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(answer(&state, req, addr, js_only).await) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Fixture { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }
}

async fn answer(
    state: &Mutex<State>,
    req: Request<hyper::body::Incoming>,
    addr: SocketAddr,
    js_only: bool,
) -> Response<Full<Bytes>> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let busy_before = {
        let mut s = state.lock().unwrap();
        s.in_flight += 1;
        let in_flight = s.in_flight;
        let user_agent = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        s.log.push(Logged {
            path: path.clone(),
            at: Instant::now(),
            in_flight,
            user_agent,
        });
        let was = match req.uri().path() {
            "/occupee" => std::mem::replace(&mut s.busy_once, true),
            "/occupee-date" => std::mem::replace(&mut s.busy_date_once, true),
            _ => false,
        };
        was
    };
    // Counts the request out even when the client gives up (the slow
    // page): hyper then drops this future mid-sleep.
    struct Done<'s>(&'s Mutex<State>);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            if let Ok(mut s) = self.0.lock() {
                s.in_flight -= 1;
            }
        }
    }
    let _done = Done(state);
    if req.uri().path() == "/lent" {
        // Longer than the tests' whole-response limit (5 s).
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    route(req.uri().path(), addr, js_only, busy_before)
}

fn respond(
    status: u16,
    headers: &[(&str, String)],
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Full::new(body.into())).unwrap()
}

fn html(body: String) -> Response<Full<Bytes>> {
    respond(
        200,
        &[("content-type", "text/html; charset=utf-8".into())],
        body,
    )
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    respond(302, &[("location", to.to_string())], "")
}

fn route(path: &str, addr: SocketAddr, js_only: bool, busy_before: bool) -> Response<Full<Bytes>> {
    if js_only {
        return match path {
            "/robots.txt" | "/sitemap.xml" => respond(404, &[], "absent"),
            // A start page past the 2 MiB limit, for a job that stores nothing.
            "/enorme" => html(format!(
                "<html><body><main><p>{}</p></main></body></html>",
                "x".repeat(3 * 1024 * 1024)
            )),
            _ => html(JS_SHELL.to_string()),
        };
    }
    let xml = |body: String| respond(200, &[("content-type", "application/xml".into())], body);
    match path {
        "/robots.txt" => respond(200, &[("content-type", "text/plain".into())],
            format!("User-agent: *\nDisallow: /prive\n\nSitemap: http://{addr}/sitemap_index.xml\n")),
        "/sitemap_index.xml" => xml(format!(
            "<?xml version=\"1.0\"?><sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
             <sitemap><loc>http://{addr}/sitemap-pages.xml</loc></sitemap></sitemapindex>")),
        "/sitemap-pages.xml" => xml(format!(
            "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
             <url><loc>http://{addr}/</loc></url><url><loc>http://{addr}/equipe</loc></url>\
             <url><loc>http://{addr}/tarifs/</loc></url><url><loc>http://{addr}/prive/admin</loc></url></urlset>")),
        "/" => html(page("Accueil", HOME)),
        "/services" => html(page("Services", SERVICES)),
        "/tarifs" => html(page("Tarifs", TARIFS)),
        "/horaires" => html(page("Horaires", HORAIRES)),
        "/contact" => html(page("Contact", CONTACT)),
        "/equipe" => html(page("L'équipe", EQUIPE)),
        "/occupee" if !busy_before => respond(429, &[("retry-after", "1".into())], "trop de requêtes"),
        "/occupee" => html(page("Réservation", OCCUPEE)),
        // Retry-After as an HTTP date, two seconds ahead.
        "/occupee-date" if !busy_before => respond(429, &[("retry-after", httpdate::fmt_http_date(
            std::time::SystemTime::now() + Duration::from_secs(2)))], "trop de requêtes"),
        "/occupee-date" => html(page("Offres", OFFRES)),
        // A redirect into the part robots.txt disallows: never followed.
        "/vers-admin" => redirect("/prive/cache"),
        "/x-robots" => respond(200, &[("content-type", "text/html".into()), ("x-robots-tag", "noindex".into())],
            page("Archives", "<h1>Archives</h1><p>Les anciennes promotions du salon, de 2009 à aujourd'hui.</p>")),
        // Its canonical is in the part robots.txt disallows: the page is
        // stored under its own address.
        "/horaires-ete" => html(page(
            "Horaires d'été",
            &format!("<link rel=canonical href=\"/prive/horaires-ete\">{HORAIRES_ETE}"),
        )),
        // Only the form the home page links, with its trailing slash.
        // A title past the 500 characters the library keeps: cut.
        "/titre-long" => html(page(&"Salon ".repeat(100), "<h1>Revue de presse</h1><p>Le Progrès a parlé du salon en 2024.</p>")),
        // A redirect to an address past the library's 2,048 characters:
        // the page's report is refused, the page fails, the job goes on.
        "/adresse-longue" => redirect(&format!("/partenaires?{}", "p".repeat(3000))),
        "/partenaires" => html(page("Partenaires", "<h1>Partenaires</h1><p>Nos partenaires, coiffeurs et esthéticiennes de Lyon.</p>")),
        "/soins/" => html(page("Soins", "<h1>Nos soins</h1><p>Soin profond à la kératine et massage du cuir chevelu.</p>")),
        "/noindex-page" => html(NOINDEX.to_string()),
        "/accents" => respond(200, &[("content-type", "text/html; charset=windows-1252".into())], windows_1252_page()),
        "/ancienne-page" => redirect("/equipe"),
        "/boucle" => redirect("/boucle2"),
        "/boucle2" => redirect("/boucle"),
        "/vers-prive" => redirect("http://10.0.0.1/"),
        "/vers-nom-prive" => redirect("http://prive.test/"),
        "/erreur" => respond(500, &[], "erreur interne"),
        "/lent" => html(page("Lent", "<p>trop tard</p>")),
        "/enorme" => html(format!("<html><body><main><p>{}</p></main></body></html>", "x".repeat(3 * 1024 * 1024))),
        "/plaquette.pdf" => respond(200, &[("content-type", "application/pdf".into())], "%PDF-1.4 plaquette"),
        _ => respond(404, &[("content-type", "text/html".into())], "<h1>Page introuvable</h1>"),
    }
}
