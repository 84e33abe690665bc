// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @notice The EIP-3009 entry points the escrow uses: FiatToken v2.2's `bytes` signature form of
///         `transferWithAuthorization` (ECDSA for EOAs, ERC-1271 for smart accounts) and the
///         nonce-state view.
interface ITransferWithAuthorization {
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;

    /// @dev True once the nonce is used *or canceled*: FiatToken keeps a single flag for both.
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
}

/// @title InviteEscrow
/// @notice Holds money sent to an alias (phone number, e-mail) that has no wallet yet. The
///         sender signs an ordinary EIP-3009 `TransferWithAuthorization` to this escrow whose
///         nonce is the hash of the invitation's terms; the platform's `releaser` pays the
///         invitation to the recipient's new wallet once they proved the alias, before the
///         deadline; after the deadline anyone can send it back to the sender.
/// @dev Security argument, in the order a reviewer should check it:
///
///      1. The sender's signature fixes every term. The nonce is `invitationId(...)`, the hash of
///         (chain id, this escrow, token, sender, value, claim hash, deadline), recomputed here
///         from the calldata: whoever submits cannot change the amount, the alias commitment or
///         the deadline (a different nonce fails the token's signature check), and the
///         signature's `to` is this escrow, so the money cannot go anywhere else.
///      2. Solvency: `escrowed[token]` is the sum of the open invitations of `token`, and every
///         record is created only if the escrow's balance of `token` covers it, new one included.
///         So every open invitation can always be paid out in full, whatever was recorded later.
///      3. Front-running. `transferWithAuthorization` may be submitted by anyone, so a copy sent
///         straight to the token moves the money here with no record. `register` records it
///         afterwards, once, for exactly the terms the nonce commits to. It is releaser-only
///         because the token cannot tell a *used* nonce from a *canceled* one
///         (`authorizationState` is one flag for both): a sender who cancels their own nonce
///         could otherwise register terms that were never paid and, after their deadline,
///         reclaim somebody else's front-run money. The releaser tells them apart from the
///         token's logs (`AuthorizationUsed`, not `AuthorizationCanceled`, plus the `Transfer`
///         to this escrow); point 2 bounds even a wrong registration by what the escrow holds
///         beyond its open invitations.
///      4. Exactly once: an invitation is Open, then Released or Reclaimed, never again Open;
///         the state changes before the token is called, and every entry point is
///         `nonReentrant`.
///      5. Time splits the powers: before the deadline only the releaser can move an invitation
///         (to any address: the platform decides who proved the alias), from the deadline on
///         only back to the sender (by anyone). The owner can only replace the releaser; nobody
///         can move an invitation anywhere else, and nothing can be upgraded.
///      6. Any token address may be named, so an event of this escrow proves only that *this
///         token* moved: readers must check `token` against the tokens they accept. Accounting
///         is per token, so a hostile token cannot reach other tokens' invitations.
contract InviteEscrow is Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Where an invitation stands. `None` means no record for that id.
    enum Status {
        None,
        Open,
        Released,
        Reclaimed
    }

    /// @notice One invitation, in three storage slots.
    struct Invitation {
        address token;
        uint64 deadline;
        Status status;
        address from;
        uint96 value;
        bytes32 claimHash;
    }

    bytes32 public constant INVITATION_TYPEHASH = keccak256(
        "seiwallet.InviteEscrow.Invitation(uint256 chainId,address escrow,address token,"
        "address from,uint256 value,bytes32 claimHash,uint256 deadline)"
    );

    bytes32 public constant CLAIM_TYPEHASH =
        keccak256("seiwallet.InviteEscrow.Claim(bytes32 salt,bytes32 aliasHash)");

    /// @notice Who may release invitations (before their deadline) and register front-run ones.
    address public releaser;

    /// @notice Invitations by id (the EIP-3009 nonce the sender signed).
    mapping(bytes32 id => Invitation) public invitations;

    /// @notice Sum of the open invitations of each token, in its base units.
    mapping(address token => uint256 amount) public escrowed;

    event InvitationCreated(
        bytes32 indexed id,
        address indexed from,
        address indexed token,
        uint256 value,
        bytes32 claimHash,
        uint256 deadline
    );
    event InvitationClaimed(bytes32 indexed id, address indexed to, address token, uint256 value);
    event InvitationReclaimed(
        bytes32 indexed id, address indexed from, address token, uint256 value
    );
    event ReleaserChanged(address indexed previousReleaser, address indexed newReleaser);

    /// @notice An invitation with these terms is already recorded.
    error InvitationExists(bytes32 id);
    /// @notice No invitation with this id.
    error UnknownInvitation(bytes32 id);
    /// @notice The invitation was already released or reclaimed.
    error InvitationAlreadySettled(bytes32 id);
    /// @notice The deadline has passed: the invitation can only go back to its sender now.
    error InvitationExpired(bytes32 id, uint256 deadline);
    /// @notice The deadline has not passed yet: only the releaser can move the invitation.
    error InvitationNotExpired(bytes32 id, uint256 deadline);
    /// @notice The caller is not the releaser.
    error NotReleaser(address account);
    /// @notice `register` of terms whose authorization the token has not seen used.
    error AuthorizationNotUsed(bytes32 id);
    /// @notice The escrow's balance of the token would not cover its open invitations.
    error EscrowUnderfunded(address token, uint256 balance, uint256 owed);
    /// @notice A deposit whose deadline is not in the future, or a deadline past 2**64 - 1.
    error DeadlineOutOfRange(uint256 deadline);
    /// @notice A value above 2**96 - 1 base units.
    error ValueTooLarge(uint256 value);
    /// @notice The claim hash is zero (it must commit to a salt and an alias).
    error ZeroClaimHash();
    /// @notice An address that must be set is zero.
    error ZeroAddress();
    /// @notice An invitation of nothing.
    error ZeroAmount();

    modifier onlyReleaser() {
        if (msg.sender != releaser) revert NotReleaser(msg.sender);
        _;
    }

    /// @param initialOwner May replace the releaser (two-step ownership transfer).
    /// @param initialReleaser The platform's identity oracle.
    constructor(address initialOwner, address initialReleaser) Ownable(initialOwner) {
        _setReleaser(initialReleaser);
    }

    // ------------------------------------------------------------------------------------------
    // Terms
    // ------------------------------------------------------------------------------------------

    /// @notice The EIP-3009 nonce the sender signs for these terms; also the invitation's id.
    function invitationId(
        address token,
        address from,
        uint256 value,
        bytes32 claimHash,
        uint256 deadline
    ) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                INVITATION_TYPEHASH,
                block.chainid,
                address(this),
                token,
                from,
                value,
                claimHash,
                deadline
            )
        );
    }

    /// @notice The claim hash of a salt and a normalised alias (for off-chain cross-checks; never
    ///         send an alias to the chain in a transaction).
    function claimHashOf(bytes32 salt, string calldata normalisedAlias)
        external
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(CLAIM_TYPEHASH, salt, keccak256(bytes(normalisedAlias))));
    }

    // ------------------------------------------------------------------------------------------
    // Creating invitations
    // ------------------------------------------------------------------------------------------

    /// @notice Pull the sender's authorized transfer into the escrow and record the invitation.
    ///         Anyone may submit it: the sender's signature fixes the terms.
    function deposit(
        address token,
        address from,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 claimHash,
        uint256 deadline,
        bytes calldata signature
    ) external nonReentrant returns (bytes32 id) {
        if (deadline <= block.timestamp) revert DeadlineOutOfRange(deadline);
        id = _record(token, from, value, claimHash, deadline);
        // Moves exactly `value` from `from` to this escrow, or reverts (bad signature, used or
        // canceled nonce, expired authorization, blacklisted party, paused token, low balance).
        ITransferWithAuthorization(token).transferWithAuthorization(
            from, address(this), value, validAfter, validBefore, id, signature
        );
        _requireFunded(token);
    }

    /// @notice Record an invitation whose authorization was submitted straight to the token.
    /// @dev Releaser-only, because a canceled nonce looks used (see point 3 above). Allowed after
    ///      the deadline too: the record is what lets the sender reclaim.
    function register(
        address token,
        address from,
        uint256 value,
        bytes32 claimHash,
        uint256 deadline
    ) external nonReentrant onlyReleaser returns (bytes32 id) {
        id = _record(token, from, value, claimHash, deadline);
        if (!ITransferWithAuthorization(token).authorizationState(from, id)) {
            revert AuthorizationNotUsed(id);
        }
        _requireFunded(token);
    }

    // ------------------------------------------------------------------------------------------
    // Settling invitations
    // ------------------------------------------------------------------------------------------

    /// @notice Pay an open invitation in full to `to`, whom the platform verified holds the alias.
    function release(bytes32 id, address to) external nonReentrant onlyReleaser {
        if (to == address(0)) revert ZeroAddress();
        Invitation storage invitation = _open(id);
        uint256 deadline = invitation.deadline;
        if (block.timestamp >= deadline) revert InvitationExpired(id, deadline);
        invitation.status = Status.Released;
        (address token, uint256 value) = _pay(invitation, to);
        emit InvitationClaimed(id, to, token, value);
    }

    /// @notice Send an open invitation whose deadline has passed back to its sender. Anyone may.
    function reclaim(bytes32 id) external nonReentrant {
        Invitation storage invitation = _open(id);
        uint256 deadline = invitation.deadline;
        if (block.timestamp < deadline) revert InvitationNotExpired(id, deadline);
        invitation.status = Status.Reclaimed;
        address from = invitation.from;
        (address token, uint256 value) = _pay(invitation, from);
        emit InvitationReclaimed(id, from, token, value);
    }

    // ------------------------------------------------------------------------------------------
    // Administration
    // ------------------------------------------------------------------------------------------

    /// @notice Replace the releaser, with immediate effect (revoking a leaked key cannot wait).
    function setReleaser(address newReleaser) external onlyOwner {
        _setReleaser(newReleaser);
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    function _record(
        address token,
        address from,
        uint256 value,
        bytes32 claimHash,
        uint256 deadline
    ) private returns (bytes32 id) {
        if (token == address(0) || from == address(0)) revert ZeroAddress();
        if (value == 0) revert ZeroAmount();
        if (value > type(uint96).max) revert ValueTooLarge(value);
        if (claimHash == bytes32(0)) revert ZeroClaimHash();
        if (deadline > type(uint64).max) revert DeadlineOutOfRange(deadline);
        id = invitationId(token, from, value, claimHash, deadline);
        Invitation storage invitation = invitations[id];
        if (invitation.status != Status.None) revert InvitationExists(id);

        // Effects before interactions: the record exists before any token is called.
        invitation.token = token;
        invitation.deadline = uint64(deadline);
        invitation.status = Status.Open;
        invitation.from = from;
        invitation.value = uint96(value);
        invitation.claimHash = claimHash;
        escrowed[token] += value;
        emit InvitationCreated(id, from, token, value, claimHash, deadline);
    }

    /// @dev The escrow's balance of `token` covers all its open invitations (point 2).
    function _requireFunded(address token) private view {
        uint256 balance = IERC20(token).balanceOf(address(this));
        uint256 owed = escrowed[token];
        if (balance < owed) revert EscrowUnderfunded(token, balance, owed);
    }

    function _open(bytes32 id) private view returns (Invitation storage invitation) {
        invitation = invitations[id];
        Status status = invitation.status;
        if (status == Status.None) revert UnknownInvitation(id);
        if (status != Status.Open) revert InvitationAlreadySettled(id);
    }

    /// @dev Pays a settled-just-now invitation's full value to `to`; its status is already set.
    function _pay(Invitation storage invitation, address to)
        private
        returns (address token, uint256 value)
    {
        token = invitation.token;
        value = invitation.value;
        escrowed[token] -= value;
        IERC20(token).safeTransfer(to, value);
    }

    function _setReleaser(address newReleaser) private {
        if (newReleaser == address(0)) revert ZeroAddress();
        emit ReleaserChanged(releaser, newReleaser);
        releaser = newReleaser;
    }
}
