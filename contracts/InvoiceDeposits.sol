// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @notice What the deposits contract reads of the PaymentRouter it is bound to.
interface IPaymentRouterView {
    /// @notice Where the router sends fees (changed only by the router's owner).
    function feeCollector() external view returns (address);

    /// @notice Who paid the terms with this payment id through the router; zero if nobody did.
    function payerOf(bytes32 paymentId) external view returns (address);
}

/// @title DepositBox
/// @notice One invoice's deposit address once deployed: an EIP-1167 clone of this contract, made
///         by `InvoiceDeposits` with CREATE2. It holds what was sent to it and does one thing:
///         move it where its creator says. Its creator only ever says "the invoice's merchant"
///         or "the router's fee collector" (see `InvoiceDeposits`).
/// @dev No receive function: once deployed, a box refuses the native coin (a wallet's estimate
///      fails before anything is sent). Coins sent before it existed can only go to the merchant.
contract DepositBox {
    using SafeERC20 for IERC20;

    /// @notice The `InvoiceDeposits` that made the implementation (and, through it, each clone).
    address private immutable creator;

    /// @notice The caller is not the `InvoiceDeposits` contract.
    error NotCreator(address caller);

    constructor() {
        creator = msg.sender;
    }

    /// @notice Move `value` of `token` (the native coin if `token` is zero) to `to`; creator only.
    /// @dev Reverts with the token's own reason (SafeERC20 bubbles it).
    function move(address token, address to, uint256 value) external {
        if (msg.sender != creator) revert NotCreator(msg.sender);
        if (token == address(0)) {
            Address.sendValue(payable(to), value);
        } else {
            IERC20(token).safeTransfer(to, value);
        }
    }
}

/// @title InvoiceDeposits
/// @notice Lets any wallet pay an invoice with a plain token transfer. Every set of payment terms
///         (the PaymentRouter's `Payment`) has a deposit address: the CREATE2 address of a
///         `DepositBox` clone whose salt is the router's payment id of those terms. The address
///         is known before anything is deployed; `sweep` deploys the box when money is there and
///         pays it out: the fee (once) to the router's fee collector, the rest to the merchant.
/// @dev Security argument, in the order a reviewer should check it:
///
///      1. The address authenticates the terms. A box's address is a hash of (this contract, the
///         payment id, the clone code), and the payment id hashes every term (invoice, merchant,
///         token, amount, fee, router, chain id). `sweep(p)` can only reach the box of exactly
///         `p`: other terms (another merchant, a larger fee) name another, empty box. So whoever
///         calls `sweep` cannot redirect money or raise the fee, and anyone may call it.
///      2. Money in a box goes only to the merchant and the fee collector. Boxes obey only this
///         contract, and it moves the terms' token to `p.merchant` except the fee, and any other
///         token (or the native coin) only to `p.merchant` (`rescue`). No owner, no upgrade, no
///         other destination. The fee collector is the router's, read when a fee is paid: the
///         router's owner can rotate it (as for router payments) but never reach the merchant's
///         share.
///      3. The fee is at most `p.fee` per payment id, ever. It becomes due when the total swept
///         reaches `p.amount`, and is then taken out of that sweep and later ones until `p.fee`
///         is paid. Sweeping an under-payment early moves it all to the merchant (the fee waits
///         for the total). If the router already settled the same terms (the payer also paid
///         from the wallet), no fee is due here: the router took it.
///      4. Reentrancy: every entry point is `nonReentrant`; the running totals are written before
///         any token is called; boxes take orders only from this contract. A hostile token can
///         only misreport its own balance, i.e. corrupt the accounting of payment ids naming it.
///      5. Any token address may be named (as for the router): readers of the events must check
///         `token` against the tokens they accept.
contract InvoiceDeposits is ReentrancyGuardTransient {
    /// @notice The router's payment terms, field for field (the same ABI tuple).
    struct Payment {
        bytes32 invoiceId;
        address merchant;
        address token;
        uint256 amount;
        uint256 fee;
    }

    /// @notice Running totals of one payment id's box, in the terms' token: everything moved out
    ///         of it (merchant + fee), and the fee part of that.
    struct Totals {
        uint128 swept;
        uint128 feeTaken;
    }

    /// @notice The router's payment typehash: `paymentId` equals `PaymentRouter.paymentNonce`.
    bytes32 public constant PAYMENT_TYPEHASH = keccak256(
        "seiwallet.PaymentRouter.Payment(bytes32 invoiceId,address merchant,address token,"
        "uint256 amount,uint256 fee,address router,uint256 chainId)"
    );

    /// @notice The PaymentRouter whose payment ids key the boxes and whose fee collector is paid.
    address public immutable router;

    /// @notice The `DepositBox` every box is a clone of (this contract's first creation).
    address public immutable boxImplementation;

    /// @notice Running totals by payment id.
    mapping(bytes32 paymentId => Totals) public totals;

    /// @notice Money left a box: `value` in all, of which `feeTaken` to the fee collector.
    event DepositSwept(
        bytes32 indexed paymentId,
        bytes32 indexed invoiceId,
        address indexed merchant,
        address token,
        uint256 value,
        uint256 feeTaken
    );
    /// @notice The total swept for the payment id reached its amount (emitted once).
    event DepositSettled(
        bytes32 indexed paymentId,
        bytes32 indexed invoiceId,
        address indexed merchant,
        address token,
        uint256 swept,
        uint256 feeTaken
    );
    /// @notice Another token (or the native coin, `token` zero) left a box, all to the merchant.
    event DepositRescued(
        bytes32 indexed paymentId,
        bytes32 indexed invoiceId,
        address indexed merchant,
        address token,
        uint256 value
    );

    /// @notice An address that must be set is zero.
    error ZeroAddress();
    /// @notice Terms of a payment of nothing.
    error ZeroAmount();
    /// @notice The fee is larger than the amount.
    error FeeExceedsAmount();
    /// @notice The box of these terms holds none of the token asked for.
    error NothingToSweep(bytes32 paymentId, address token);
    /// @notice `rescue` of the terms' own token: use `sweep`, which takes the fee.
    error RescueOfPaymentToken(address token);

    /// @param router_ The PaymentRouter this contract's payment ids and fee collector come from.
    constructor(address router_) {
        if (router_ == address(0)) revert ZeroAddress();
        router = router_;
        // Nonce 1 of this contract: the address anyone can derive from ours.
        boxImplementation = address(new DepositBox());
    }

    // ------------------------------------------------------------------------------------------
    // Addresses
    // ------------------------------------------------------------------------------------------

    /// @notice The router's payment id (its EIP-3009 nonce) of `p`: the salt of `p`'s box.
    function paymentId(Payment calldata p) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                PAYMENT_TYPEHASH,
                p.invoiceId,
                p.merchant,
                p.token,
                p.amount,
                p.fee,
                router,
                block.chainid
            )
        );
    }

    /// @notice Where a payer sends `p.amount` of `p.token` to pay `p` (deployed or not).
    function depositAddress(Payment calldata p) external view returns (address) {
        return Clones.predictDeterministicAddress(boxImplementation, paymentId(p));
    }

    /// @notice Whether the total swept for `p` has reached its amount.
    function isSettled(Payment calldata p) external view returns (bool) {
        return totals[paymentId(p)].swept >= p.amount;
    }

    // ------------------------------------------------------------------------------------------
    // Moving money out of a box
    // ------------------------------------------------------------------------------------------

    /// @notice Pay out everything `p`'s box holds of `p.token`: the fee when due, the rest to the
    ///         merchant. Anyone may call it (point 1): the terms decide where money goes.
    /// @return value What left the box.
    function sweep(Payment calldata p) external nonReentrant returns (uint256 value) {
        _checkTerms(p);
        bytes32 id = paymentId(p);
        address box = _box(id);
        value = IERC20(p.token).balanceOf(box);
        if (value == 0) revert NothingToSweep(id, p.token);

        Totals memory running = totals[id];
        uint256 before = running.swept;
        uint256 total = before + value;
        uint256 fee;
        if (total >= p.amount) {
            uint256 owed = p.fee - running.feeTaken; // feeTaken <= fee, always
            if (owed != 0 && IPaymentRouterView(router).payerOf(id) == address(0)) {
                fee = owed < value ? owed : value;
            }
        }
        // Effects before interactions: a reentering token would see the sweep counted.
        running.swept = SafeCast.toUint128(total);
        running.feeTaken += uint128(fee); // <= p.fee <= p.amount <= total < 2**128
        totals[id] = running;

        if (value != fee) DepositBox(box).move(p.token, p.merchant, value - fee);
        if (fee != 0) DepositBox(box).move(p.token, IPaymentRouterView(router).feeCollector(), fee);

        emit DepositSwept(id, p.invoiceId, p.merchant, p.token, value, fee);
        if (before < p.amount && total >= p.amount) {
            emit DepositSettled(id, p.invoiceId, p.merchant, p.token, total, running.feeTaken);
        }
    }

    /// @notice Move everything `p`'s box holds of another `token` (zero: the native coin) to the
    ///         merchant, without a fee. Anyone may call it.
    /// @dev Only the merchant, because the terms name no one else who could be owed it, and the
    ///      platform cannot price a token the invoice was not in: the merchant refunds the payer
    ///      or keeps it. `p.token` itself is refused, so the fee cannot be avoided this way.
    /// @return value What left the box.
    function rescue(Payment calldata p, address token) external nonReentrant returns (uint256 value) {
        _checkTerms(p);
        if (token == p.token) revert RescueOfPaymentToken(token);
        bytes32 id = paymentId(p);
        address box = _box(id);
        value = token == address(0) ? box.balance : IERC20(token).balanceOf(box);
        if (value == 0) revert NothingToSweep(id, token);
        DepositBox(box).move(token, p.merchant, value);
        emit DepositRescued(id, p.invoiceId, p.merchant, token, value);
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    /// @dev The router refuses the same terms; refusing them here keeps boxes of unpayable terms
    ///      from ever being deployed.
    function _checkTerms(Payment calldata p) private pure {
        if (p.merchant == address(0) || p.token == address(0)) revert ZeroAddress();
        if (p.amount == 0) revert ZeroAmount();
        if (p.fee > p.amount) revert FeeExceedsAmount();
    }

    /// @dev The box of payment id `id`, deployed now if it is not yet.
    function _box(bytes32 id) private returns (address box) {
        box = Clones.predictDeterministicAddress(boxImplementation, id);
        if (box.code.length == 0) {
            Clones.cloneDeterministic(boxImplementation, id);
        }
    }
}
