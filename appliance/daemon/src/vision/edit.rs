//! Changes to what vision runs on: cameras, skills, face libraries and plate lists. The local
//! API and the cloud's commands both come through here, so a change is validated, stored
//! durably and applied live the same way whoever asked. Each change holds the catalog's edit
//! lock across its read-modify-write, stores, then restarts the camera it concerns or rebuilds
//! the libraries.

use appliance_skills::config::SkillConfig;
use appliance_skills::library::face::Library;
use appliance_skills::library::plate::{PlateLibrary, PlateList};
use appliance_store::{StateChange, StoreError};
use serde::Serialize;
use serde_json::Value;

use super::Vision;
use super::catalog::{self, Camera, FacePhoto};

/// The face detector enrolment uses unless the caller names another.
pub const DEFAULT_FACE_MODEL: &str = "centerface";

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    NotFound(String),
    /// The input is wrong; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("no face found in the photo")]
    NoFace,
    /// ONNX Runtime or a model is missing.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn invalid(message: impl std::fmt::Display) -> EditError {
    EditError::Invalid(message.to_string())
}

/// A photo enrolled.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Enrolled {
    pub photo_id: String,
    pub person_id: String,
    /// The face detector's score on the photo.
    pub score: f32,
    /// Faces found; the most confident was enrolled.
    pub faces: usize,
}

/// A skill as stored: the config normalised by parsing, with every default written out.
pub fn parse_skill(json: &[u8]) -> Result<Value, EditError> {
    let config = SkillConfig::from_json(json).map_err(|e| invalid(format!("skill: {e}")))?;
    Ok(serde_json::to_value(&config).expect("a skill config serialises"))
}

/// The photos of a library: (photo id, photo).
pub fn photos_of(vision: &Vision, library: &str) -> Result<Vec<(String, FacePhoto)>, StoreError> {
    Ok(
        catalog::load::<FacePhoto>(vision.store(), catalog::FACE_PHOTOS, &format!("{library}/"))?
            .into_iter()
            .map(|(key, photo)| (key[library.len() + 1..].to_string(), photo))
            .collect(),
    )
}

impl Vision {
    fn camera(&self, id: &str) -> Result<Camera, EditError> {
        catalog::get(self.store(), catalog::CAMERAS, id)?
            .ok_or_else(|| EditError::NotFound(format!("no camera {id}")))
    }

    fn library(&self, name: &str) -> Result<Library, EditError> {
        catalog::get(self.store(), catalog::FACE_LIBRARIES, name)?
            .ok_or_else(|| EditError::NotFound(format!("no face library {name}")))
    }

    async fn restart(&self, camera: &str) -> Result<(), EditError> {
        let (vision, camera) = (self.clone(), camera.to_string());
        tokio::task::spawn_blocking(move || vision.restart_camera(&camera)).await?;
        Ok(())
    }

    async fn reload(&self) -> Result<(), EditError> {
        let vision = self.clone();
        tokio::task::spawn_blocking(move || vision.reload_libraries()).await??;
        Ok(())
    }

    /// Adds or replaces a camera; its analysis restarts with the new source.
    pub async fn put_camera(&self, id: &str, camera: &Camera) -> Result<(), EditError> {
        catalog::check_id("camera", id).map_err(invalid)?;
        camera.validate().map_err(invalid)?;
        {
            let _edit = self.edit().await;
            catalog::commit(
                self.store(),
                vec![catalog::put(catalog::CAMERAS, id.to_string(), camera)],
            )
            .await?;
        }
        self.restart(id).await
    }

    /// Removes a camera with its skills.
    pub async fn delete_camera(&self, id: &str) -> Result<(), EditError> {
        {
            let _edit = self.edit().await;
            self.camera(id)?;
            let mut changes = vec![catalog::delete(catalog::CAMERAS, id.to_string())];
            for (key, _) in
                catalog::load::<Value>(self.store(), catalog::SKILLS, &format!("{id}/"))?
            {
                changes.push(catalog::delete(catalog::SKILLS, key));
            }
            catalog::commit(self.store(), changes).await?;
        }
        self.restart(id).await
    }

    /// Stores a skill (JSON as the schema describes) of an existing camera and restarts the
    /// camera with it; returns the config as stored.
    pub async fn put_skill(
        &self,
        camera: &str,
        skill: &str,
        json: &[u8],
    ) -> Result<Value, EditError> {
        catalog::check_id("skill", skill).map_err(invalid)?;
        let config = parse_skill(json)?;
        {
            let _edit = self.edit().await;
            self.camera(camera)?;
            catalog::commit(
                self.store(),
                vec![catalog::put(
                    catalog::SKILLS,
                    catalog::skill_key(camera, skill),
                    &config,
                )],
            )
            .await?;
        }
        self.restart(camera).await?;
        Ok(config)
    }

    /// Removes a skill; the camera goes on with its others.
    pub async fn delete_skill(&self, camera: &str, skill: &str) -> Result<(), EditError> {
        let key = catalog::skill_key(camera, skill);
        {
            let _edit = self.edit().await;
            if self.store().state(catalog::SKILLS, &key)?.is_none() {
                return Err(EditError::NotFound(format!(
                    "no skill {skill} on camera {camera}"
                )));
            }
            catalog::commit(self.store(), vec![catalog::delete(catalog::SKILLS, key)]).await?;
        }
        self.restart(camera).await
    }

    /// Changes a face library (made first, with the default threshold, when `create` and
    /// missing), checks and stores it, and has the skills use it.
    pub async fn edit_library(
        &self,
        name: &str,
        create: bool,
        change: impl FnOnce(&mut Library),
    ) -> Result<Library, EditError> {
        catalog::check_id("library", name).map_err(invalid)?;
        let library = {
            let _edit = self.edit().await;
            let mut library = match catalog::get(self.store(), catalog::FACE_LIBRARIES, name)? {
                Some(library) => library,
                None if create => Library::new(name.to_string()),
                None => return Err(EditError::NotFound(format!("no face library {name}"))),
            };
            change(&mut library);
            library.validate().map_err(invalid)?;
            catalog::commit(
                self.store(),
                vec![catalog::put(
                    catalog::FACE_LIBRARIES,
                    name.to_string(),
                    &library,
                )],
            )
            .await?;
            library
        };
        self.reload().await?;
        Ok(library)
    }

    /// Deletions of a library's photos: all, or one person's.
    fn photo_deletions(
        &self,
        library: &str,
        person: Option<&str>,
    ) -> Result<Vec<StateChange>, EditError> {
        Ok(photos_of(self, library)?
            .into_iter()
            .filter(|(_, photo)| person.is_none_or(|p| photo.person_id == p))
            .map(|(id, _)| catalog::delete(catalog::FACE_PHOTOS, format!("{library}/{id}")))
            .collect())
    }

    /// Removes a face library with its people and photos.
    pub async fn delete_library(&self, name: &str) -> Result<(), EditError> {
        {
            let _edit = self.edit().await;
            self.library(name)?;
            let mut changes = vec![catalog::delete(catalog::FACE_LIBRARIES, name.to_string())];
            changes.extend(self.photo_deletions(name, None)?);
            catalog::commit(self.store(), changes).await?;
        }
        self.reload().await
    }

    /// Removes a person and their photos.
    pub async fn delete_person(&self, library: &str, person: &str) -> Result<(), EditError> {
        {
            let _edit = self.edit().await;
            let mut stored = self.library(library)?;
            let before = stored.people.len();
            stored.people.retain(|p| p.id != person);
            if stored.people.len() == before {
                return Err(EditError::NotFound(format!(
                    "no person {person} in {library}"
                )));
            }
            let mut changes = vec![catalog::put(
                catalog::FACE_LIBRARIES,
                library.to_string(),
                &stored,
            )];
            changes.extend(self.photo_deletions(library, Some(person))?);
            catalog::commit(self.store(), changes).await?;
        }
        self.reload().await
    }

    /// Enrols a photo (JPEG or PNG) of a person: the most confident face is aligned and
    /// embedded by `model` (a face detector; default centerface); the embedding is stored,
    /// the photo is not.
    pub async fn enrol_photo(
        &self,
        library: &str,
        person: &str,
        photo: Vec<u8>,
        model: Option<String>,
    ) -> Result<Enrolled, EditError> {
        let has_person = |vision: &Vision| -> Result<(), EditError> {
            if vision
                .library(library)?
                .people
                .iter()
                .any(|p| p.id == person)
            {
                Ok(())
            } else {
                Err(EditError::NotFound(format!(
                    "no person {person} in {library}"
                )))
            }
        };
        has_person(self)?;
        let model = model.unwrap_or_else(|| DEFAULT_FACE_MODEL.to_string());
        let vision = self.clone();
        let faces = tokio::task::spawn_blocking(move || {
            let image = image::load_from_memory(&photo)
                .map_err(|e| invalid(format!("photo: not a JPEG or PNG image ({e})")))?
                .to_rgb8();
            let models = vision.models().map_err(EditError::Unavailable)?;
            let analyzer = models
                .get(&model)
                .map_err(|e| EditError::Unavailable(e.to_string()))?;
            analyzer
                .embed_faces(&image)
                .map_err(|e| invalid(format!("model {model}: {e}")))
        })
        .await??;
        let Some((score, embedding)) = faces.first().cloned() else {
            return Err(EditError::NoFace);
        };
        let photo_id = hex::encode(rand::random::<[u8; 6]>());
        {
            let _edit = self.edit().await;
            // The person may have gone while the photo was analysed.
            has_person(self)?;
            let photo = FacePhoto {
                person_id: person.to_string(),
                embedding,
                score,
            };
            catalog::commit(
                self.store(),
                vec![catalog::put(
                    catalog::FACE_PHOTOS,
                    format!("{library}/{photo_id}"),
                    &photo,
                )],
            )
            .await?;
        }
        self.reload().await?;
        Ok(Enrolled {
            photo_id,
            person_id: person.to_string(),
            score,
            faces: faces.len(),
        })
    }

    /// Removes an enrolled photo.
    pub async fn delete_photo(&self, library: &str, photo: &str) -> Result<(), EditError> {
        let key = format!("{library}/{photo}");
        {
            let _edit = self.edit().await;
            if self.store().state(catalog::FACE_PHOTOS, &key)?.is_none() {
                return Err(EditError::NotFound(format!(
                    "no photo {photo} in {library}"
                )));
            }
            catalog::commit(
                self.store(),
                vec![catalog::delete(catalog::FACE_PHOTOS, key)],
            )
            .await?;
        }
        self.reload().await
    }

    /// The plate list `name`, if stored.
    pub fn plate_list(&self, name: &str) -> Result<Option<PlateList>, EditError> {
        Ok(catalog::get(self.store(), catalog::PLATE_LISTS, name)?)
    }

    /// Changes a plate list (`change` gets the stored list, `None` when there is none, and
    /// returns the new one), checks it alone and among the others, stores it.
    pub async fn edit_plate_list(
        &self,
        name: &str,
        change: impl FnOnce(Option<PlateList>) -> Result<PlateList, EditError>,
    ) -> Result<PlateList, EditError> {
        catalog::check_id("list", name).map_err(invalid)?;
        let list = {
            let _edit = self.edit().await;
            let mut list = change(self.plate_list(name)?)?;
            list.name = name.to_string();
            list.validate().map_err(invalid)?;
            let mut lists: Vec<PlateList> =
                catalog::load::<PlateList>(self.store(), catalog::PLATE_LISTS, "")?
                    .into_iter()
                    .filter(|(key, _)| key != name)
                    .map(|(_, list)| list)
                    .collect();
            lists.push(list.clone());
            PlateLibrary::new(lists).map_err(invalid)?;
            catalog::commit(
                self.store(),
                vec![catalog::put(catalog::PLATE_LISTS, name.to_string(), &list)],
            )
            .await?;
            list
        };
        self.reload().await?;
        Ok(list)
    }

    /// Removes a plate list.
    pub async fn delete_plate_list(&self, name: &str) -> Result<(), EditError> {
        {
            let _edit = self.edit().await;
            if self.plate_list(name)?.is_none() {
                return Err(EditError::NotFound(format!("no plate list {name}")));
            }
            catalog::commit(
                self.store(),
                vec![catalog::delete(catalog::PLATE_LISTS, name.to_string())],
            )
            .await?;
        }
        self.reload().await
    }
}
