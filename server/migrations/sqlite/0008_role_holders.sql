-- Who holds a role, without walking an organisation's people: an SOS chat's unlisted
-- participants are its organisation's operators, looked up at every message.
CREATE INDEX user_roles_role ON user_roles (role, user_id);
